fn main() -> std::process::ExitCode {
    rrnet_radius::cli::run()
}

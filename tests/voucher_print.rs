//! `rrnet-radius voucher print`: the HTML sheet holds every active code of the
//! batch, escapes what came from the database, and renders in a real browser:
//! Debian's `chromium` prints it to PDF (text read back with `pdftotext`, from
//! `poppler-utils`) and screenshots it, and the QR codes in the screenshot decode
//! to the hotspot login links. Without those tools the browser part prints
//! SKIPPED (and fails under RRNET_REQUIRE_TOOLS=1).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use common::{have_tool, TestDb};

const BATCH: &str = "cafe&<2026>";
const LOGIN: &str = "http://hotspot.lan";

struct Batch {
    db: TestDb,
    /// Active codes and their passwords.
    vouchers: Vec<(String, String)>,
    revoked: String,
}

fn batch() -> Batch {
    let db = TestDb::sqlite();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "1h <fast>",
        "--time",
        "1h",
        "--validity",
        "1d",
        "--data",
        "1GiB",
        "--price",
        "5.00 \"USD\" & tax",
    ]);
    let out = db.cli(&[
        "voucher",
        "generate",
        "--plan",
        "1h <fast>",
        "--count",
        "20",
        "--batch",
        BATCH,
    ]);
    let mut vouchers: Vec<(String, String)> = out
        .lines()
        .map(|c| (c.to_string(), c.to_string()))
        .collect();
    assert_eq!(vouchers.len(), 20);
    db.cli(&[
        "voucher",
        "add",
        "PW-CARD1",
        "--plan",
        "1h <fast>",
        "--password",
        "s3cret&pw",
        "--batch",
        BATCH,
    ]);
    vouchers.push(("PW-CARD1".into(), "s3cret&pw".into()));
    db.cli(&[
        "voucher",
        "add",
        "REVOKED1",
        "--plan",
        "1h <fast>",
        "--batch",
        BATCH,
    ]);
    db.cli(&["voucher", "revoke", "REVOKED1"]);
    Batch {
        db,
        vouchers,
        revoked: "REVOKED1".into(),
    }
}

fn link(code: &str, password: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!(
        "{LOGIN}/login?username={}&password={}",
        enc(code),
        enc(password)
    )
}

fn print_html(b: &Batch, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("vouchers.html");
    b.db.cli(&[
        "voucher",
        "print",
        "--batch",
        BATCH,
        "--login-url",
        LOGIN,
        "--output",
        path.to_str().unwrap(),
    ]);
    path
}

#[test]
fn html_sheet_holds_every_code_escaped() {
    let b = batch();
    let dir = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(print_html(&b, dir.path())).unwrap();
    for (code, _) in &b.vouchers {
        assert!(html.contains(&format!(">{code}<")), "{code} missing");
    }
    assert!(!html.contains(&b.revoked), "a revoked voucher was printed");
    // Only the card whose password differs shows one.
    assert_eq!(html.matches(">Password<").count(), 1);
    assert!(html.contains(">s3cret&amp;pw<"));
    // Free text from the database is escaped.
    assert!(html.contains("5.00 &quot;USD&quot; &amp; tax"));
    assert!(html.contains("1h &lt;fast&gt;"));
    assert!(html.contains("cafe&amp;&lt;2026&gt;"));
    assert!(!html.contains("<fast>") && !html.contains("<2026>"));
    assert!(html.contains("1GiB") || html.contains("1 GiB"));
    assert_eq!(html.matches("<svg class=\"qr\"").count(), b.vouchers.len());
}

#[test]
fn csv_lists_codes_passwords_and_links() {
    let b = batch();
    let csv = b.db.cli(&[
        "voucher",
        "print",
        "--batch",
        BATCH,
        "--format",
        "csv",
        "--login-url",
        "http://hotspot.lan/login/",
    ]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("code,password,plan,price,terms,login_url")
    );
    assert_eq!(lines.count(), b.vouchers.len());
    for (code, pw) in &b.vouchers {
        assert!(csv.contains(&link(code, pw)), "{code}: no login link");
    }
    assert!(csv.contains("\"5.00 \"\"USD\"\" & tax\""));
}

#[test]
fn unknown_batch_and_bad_login_url_are_errors() {
    let b = batch();
    let out = b.db.cli_output(&["voucher", "print", "--batch", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no vouchers"));
    let out = b.db.cli_output(&[
        "voucher",
        "print",
        "--batch",
        BATCH,
        "--login-url",
        "hotspot.lan",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--login-url"));
}

/// Headless Chromium with nothing that reaches the network or a profile.
fn chromium(profile: &Path) -> Command {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn browser_prints_every_code_and_qr_codes_decode() {
    if !have_tool("chromium", &["--version"]) || !have_tool("pdftotext", &["-v"]) {
        return;
    }
    let b = batch();
    let dir = tempfile::tempdir().unwrap();
    let html = print_html(&b, dir.path());
    let url = format!("file://{}", html.display());

    // Print to PDF the way an operator would, and read the text back.
    let pdf = dir.path().join("vouchers.pdf");
    let out = chromium(&dir.path().join("profile-pdf"))
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        pdf.exists(),
        "chromium wrote no PDF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    for (code, _) in &b.vouchers {
        assert!(
            text.contains(code.as_str()),
            "{code} not on the printed page:\n{text}"
        );
    }
    assert!(!text.contains(&b.revoked));
    // 21 cards at 15 (3 × 5) to an A4 page.
    let pages = text.matches('\u{c}').count();
    assert_eq!(pages, 2, "expected two A4 pages:\n{text}");

    // A screenshot of the top of the page: its QR codes decode to login links.
    let png = dir.path().join("vouchers.png");
    let out = chromium(&dir.path().join("profile-png"))
        .args(["--window-size=794,1123", "--force-device-scale-factor=2"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = decode_qr_codes(&png);
    let expected: HashSet<String> = b.vouchers.iter().map(|(c, p)| link(c, p)).collect();
    assert!(
        decoded.len() >= 3,
        "only {} QR codes decoded from the screenshot",
        decoded.len()
    );
    for d in &decoded {
        assert!(
            expected.contains(d),
            "QR code {d:?} is no voucher's login link"
        );
    }
}

fn decode_qr_codes(png_path: &Path) -> Vec<String> {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let p = &buf[(y * w + x) * channels..];
        if channels >= 3 {
            ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as u8
        } else {
            p[0]
        }
    });
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, s)| s))
        .collect()
}

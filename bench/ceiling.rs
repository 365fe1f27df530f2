//! rrnet-ceiling: the fastest RADIUS "server" a benchmark can compare against.
//!
//! It answers every Access-Request with the same Access-Accept (Session-Timeout
//! 3600, Mikrotik-Rate-Limit "2M/2M"), signed the way a real server must sign it
//! (Message-Authenticator first, then the Response Authenticator), and every
//! Accounting-Request with an Accounting-Response. It checks no password, looks
//! nothing up and stores nothing, so its rate is what the packet path, the
//! hashing and the load generator sharing the machine allow: the ceiling row of
//! `bench/compare`. Only loopback addresses are accepted, because it accepts
//! anyone.

use std::net::{SocketAddr, UdpSocket};

use clap::Parser;
use rrnet_radius::proto::attr::{self, mikrotik};
use rrnet_radius::proto::{Code, Packet, PacketBuilder};
use socket2::{Domain, Protocol, Socket, Type};

#[derive(Parser, Debug)]
#[command(
    name = "rrnet-ceiling",
    about = "Trivial signing RADIUS responder (loopback only): the benchmark ceiling"
)]
struct Args {
    /// UDP address for Access-Requests (must be loopback).
    #[arg(long, default_value = "127.0.0.1:1812")]
    auth_listen: SocketAddr,
    /// UDP address for Accounting-Requests (must be loopback).
    #[arg(long, default_value = "127.0.0.1:1813")]
    acct_listen: SocketAddr,
    #[arg(long, env = "RRNET_CEILING_SECRET", default_value = "testing123")]
    secret: String,
    /// Threads per port, all receiving on the same socket: a datagram goes to
    /// whichever thread is waiting, so both cores can sign replies.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // A larger receive buffer keeps bursts from the closed-loop window from
    // being dropped while a thread is descheduled.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// The reply for one datagram, or None for anything that is not a request we answer.
fn answer(datagram: &[u8], secret: &[u8], buf: Vec<u8>) -> Option<Vec<u8>> {
    let request = Packet::decode(datagram).ok()?;
    match request.code() {
        Code::AccessRequest => {
            let mut b = PacketBuilder::reply(buf, &request, Code::AccessAccept);
            b.add_u32(attr::SESSION_TIMEOUT, 3600).ok()?;
            b.add_vsa(mikrotik::VENDOR_ID, mikrotik::RATE_LIMIT, b"2M/2M")
                .ok()?;
            Some(b.finish_response(request.authenticator(), secret))
        }
        Code::AccountingRequest => Some(
            PacketBuilder::reply_plain(buf, &request, Code::AccountingResponse)
                .finish_response(request.authenticator(), secret),
        ),
        _ => None,
    }
}

fn serve(socket: UdpSocket, secret: Vec<u8>) {
    let mut datagram = [0u8; 4096];
    let mut reply = Vec::with_capacity(256);
    loop {
        let (n, peer) = match socket.recv_from(&mut datagram) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("error: receive on {:?}: {e}", socket.local_addr());
                std::process::exit(1);
            }
        };
        reply.clear();
        if let Some(bytes) = answer(&datagram[..n], &secret, std::mem::take(&mut reply)) {
            // A full send buffer loses one reply; the client times it out, as it would
            // with a real server.
            let _ = socket.send_to(&bytes, peer);
            reply = bytes;
        }
    }
}

fn main() {
    let args = Args::parse();
    for addr in [args.auth_listen, args.acct_listen] {
        if !addr.ip().is_loopback() {
            eprintln!("error: {addr} is not a loopback address; rrnet-ceiling answers anyone, so it only listens on loopback");
            std::process::exit(2);
        }
    }
    let threads = args.threads.max(1);
    let mut handles = Vec::new();
    for addr in [args.auth_listen, args.acct_listen] {
        let socket = bind(addr).unwrap_or_else(|e| {
            eprintln!("error: cannot bind {addr}: {e}");
            std::process::exit(1);
        });
        for _ in 0..threads {
            let socket = socket.try_clone().expect("clone a UDP socket");
            let secret = args.secret.as_bytes().to_vec();
            handles.push(std::thread::spawn(move || serve(socket, secret)));
        }
    }
    println!(
        "rrnet-ceiling ready: auth {} acct {} ({threads} threads each)",
        args.auth_listen, args.acct_listen
    );
    for h in handles {
        let _ = h.join();
    }
}

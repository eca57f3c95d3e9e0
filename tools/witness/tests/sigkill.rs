//! Property: SIGKILL of the witness at any moment never lets it cosign an inconsistent checkpoint
//! afterwards: after every restart its size is at least the largest it acknowledged (no rollback),
//! and a fork of the history it cosigned is refused (409 or 422), never cosigned.
//!
//! Runs the `cairn-witness` binary over HTTP; each round kills it (SIGKILL, `Child::kill`) after a
//! different number of requests, while requests are in flight.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions are test code too: a panic is a failed test, as clippy.toml allows in tests"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{History, NAME, SEED, log_key_pem};

/// Rounds of start, requests, SIGKILL (CAIRN_WITNESS_KILLS to run longer).
fn rounds() -> usize {
    std::env::var("CAIRN_WITNESS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

struct Running {
    child: Child,
    addr: String,
}

fn start(dir: &std::path::Path) -> Running {
    let key = dir.join("witness.key");
    if !key.exists() {
        std::fs::write(&key, format!("{}\n", hex::encode(SEED))).unwrap();
    }
    let pem = log_key_pem(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-witness"))
        .arg("serve")
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--key")
        .arg(&key)
        .args(["--name", NAME, "--listen", "127.0.0.1:0"])
        .arg("--log")
        .arg(format!("cairn.test/log={}", pem.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit_once("listening on ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .1
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    // Keep draining stderr so the witness never blocks on it.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });
    Running { child, addr }
}

/// POSTs `body` to /add-checkpoint; returns the status and the response body, or None if the
/// connection failed (the witness was killed).
fn post(addr: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The witness's size for the test log: ask with old 0 and read the 409 (200 if it has none).
fn size(w: &Running, a: &History) -> usize {
    match post(&w.addr, &a.request(0, 1)).unwrap() {
        (409, body) => body.trim().parse().unwrap(),
        (200, _) => 1,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn sigkill_never_lets_the_witness_roll_back_or_cosign_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let total = rounds() * 8 + 8;
    let a = History::new("a", total + 1);
    let b = History::new("b", total + 1); // differs from entry 0
    let mut acknowledged = 0usize;
    let mut w = start(dir.path());
    assert_eq!(post(&w.addr, &a.request(0, 1)).unwrap().0, 200);
    acknowledged = acknowledged.max(1);
    for round in 0..rounds() {
        // Grow A in a thread; kill the witness after `round % 7 + 1` answers, mid-stream.
        let addr = w.addr.clone();
        let from = size(&w, &a);
        assert!(
            from >= acknowledged,
            "round {round}: size {from} < acknowledged {acknowledged}"
        );
        let a2 = History {
            leaves: a.leaves.clone(),
        };
        let stop_after = round % 7 + 1;
        let (tx, rx) = std::sync::mpsc::channel();
        let grower = std::thread::spawn(move || {
            let mut at = from;
            for _ in 0..8 {
                let to = at + 1;
                match post(&addr, &a2.request(at, to)) {
                    Some((200, _)) => {
                        at = to;
                        tx.send(to).unwrap();
                    }
                    Some((status, body)) => panic!("growth {at}->{to}: {status} {body}"),
                    None => break,
                }
            }
        });
        let mut answers = 0;
        while answers < stop_after {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(to) => {
                    acknowledged = acknowledged.max(to);
                    answers += 1;
                }
                Err(_) => break,
            }
        }
        w.child.kill().unwrap(); // SIGKILL
        w.child.wait().unwrap();
        grower.join().unwrap();
        while let Ok(to) = rx.try_recv() {
            acknowledged = acknowledged.max(to);
        }

        w = start(dir.path());
        let now = size(&w, &a);
        assert!(
            now >= acknowledged,
            "round {round}: restarted at {now} < acknowledged {acknowledged}"
        );
        // The fork B, at the witness's size and beyond: never cosigned.
        let (status, _) = post(&w.addr, &b.request(now, now)).unwrap();
        assert_eq!(status, 409, "round {round}: fork of equal size");
        let (status, _) = post(&w.addr, &b.request(now, now + 1)).unwrap();
        assert_eq!(status, 422, "round {round}: fork with a proof from {now}");
    }
    w.child.kill().unwrap();
    w.child.wait().unwrap();
}

//! The running `cairn-relay` of the store tests (`store_faults.rs`, `full_disk.rs`): started from
//! the `relay.toml` of a directory, optionally under strace, its standard error kept, driven over
//! raw HTTP.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "test helpers shared by several test files, each using a subset"
)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TOKEN;
use crate::strace::{self, Fault};

/// When a case's fault is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// From the relay's start: the fault lands in creating or opening the stores.
    Start,
    /// strace attaches once the relay listens: the fault lands in the imports.
    Imports,
}

/// The relay under test, its standard error kept.
pub(crate) struct Running {
    /// The relay, or strace running it (`Phase::Start`).
    pub(crate) child: Child,
    /// strace attached to the relay (`Phase::Imports`).
    tracer: Option<Child>,
    pub(crate) port: Option<u16>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // When the child is strace, the relay it runs must go too (kill_traced).
        strace::kill_traced(&mut self.child);
        if let Some(tracer) = &mut self.tracer {
            // An attached strace exits with its tracee.
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5)
                && matches!(tracer.try_wait(), Ok(None))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = tracer.kill();
            let _ = tracer.wait();
        }
    }
}

impl Running {
    /// Starts `cairn-relay` with the `relay.toml` in `dir`, under `strace` injecting `inject`
    /// from its start or once it listens (`None`: without strace). `port` is `None` if the relay
    /// exited before it listened.
    pub(crate) fn start(dir: &Path, inject: Option<(&Fault, &Path, Phase)>) -> Self {
        Self::start_env(dir, inject, &[])
    }

    /// [`Running::start`] with `env` set for the relay (`CAIRN_TEST_KILL_AFTER`).
    pub(crate) fn start_env(
        dir: &Path,
        inject: Option<(&Fault, &Path, Phase)>,
        env: &[(&str, &str)],
    ) -> Self {
        let relay = env!("CARGO_BIN_EXE_cairn-relay");
        let mut cmd = match inject {
            Some((fault, trace, Phase::Start)) => fault.command(relay, trace),
            _ => Command::new(relay),
        };
        let mut child = cmd
            .env_remove("CAIRN_TEST_KILL_AFTER")
            .envs(env.iter().copied())
            .arg("--config")
            .arg(dir.join("relay.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting the relay (strace: tools/setup installs it): {e}")
            });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(port) = line
                    .split_once("listening on 127.0.0.1:")
                    .and_then(|(_, p)| p.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
                let mut s = kept.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).ok();
        if let Some(port) = port {
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed().as_secs() < 30, "the relay did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut running = Self {
            child,
            tracer: None,
            port,
            stderr,
        };
        if let (Some((fault, trace, Phase::Imports)), Some(_)) = (inject, port) {
            let pid = running.child.id();
            running.tracer = Some(
                fault
                    .attach(pid, trace)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let started = Instant::now();
            while !strace::traced(pid) {
                assert!(started.elapsed().as_secs() < 10, "strace did not attach");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        running
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a raw HTTP/1.1 request (`Connection: close`); the response, or `None` if the relay
    /// is gone.
    pub(crate) fn send(&self, request: &[u8]) -> Option<String> {
        self.send_bytes(request)
            .map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// [`Running::send`], the response's bytes as they came.
    pub(crate) fn send_bytes(&self, request: &[u8]) -> Option<Vec<u8>> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port?)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        s.write_all(request).ok()?;
        let mut out = Vec::new();
        // A connection the relay's end dropped (it was killed) may end in a reset: what came
        // before it counts.
        let _ = s.read_to_end(&mut out);
        (!out.is_empty()).then_some(out)
    }

    /// Posts a bundle; the status code (0 if the relay is gone) and the response.
    pub(crate) fn import(&self, bundle: &[u8]) -> (u16, String) {
        let mut request = format!(
            "POST /api/v1/bundles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            bundle.len()
        )
        .into_bytes();
        request.extend_from_slice(bundle);
        let Some(reply) = self.send(&request) else {
            return (0, String::new());
        };
        let code = reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, reply)
    }

    /// The state log's size, from `/metrics` (`None` if the relay is gone).
    pub(crate) fn state_log_size(&self) -> Option<u64> {
        let reply = self.send(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )?;
        let size = reply
            .lines()
            .find_map(|l| l.strip_prefix("cairn_relay_state_log_size "))
            .and_then(|n| n.trim().parse().ok());
        assert!(size.is_some(), "no state log size in /metrics: {reply}");
        size
    }

    /// Waits (at most `secs`) for the process to exit; its status code.
    pub(crate) fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(secs) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// After a fault: both stores of `data` reopen at or above what was acknowledged (a create the
/// fault interrupted, with nothing acknowledged, may be left for the restart to resume), and
/// `fsck` passes on each. `saw` is what the relay did, for the failure message.
pub(crate) fn check_stores(data: &Path, mirror_acked: u64, state_acked: u64, ctx: &str, saw: &str) {
    for (store, acked) in [("mirror", mirror_acked), ("state", state_acked)] {
        let path = data.join(store);
        if !path.exists() {
            assert_eq!(acked, 0, "{ctx}: {store} acknowledged and missing");
            continue;
        }
        let v = match cairn_vault::Vault::open(&path) {
            Ok(v) => v,
            Err(cairn_vault::Error::NotALog(_)) if acked == 0 => continue,
            Err(e) => panic!(
                "{ctx}: reopening {store}: {e} ({saw}); processes: {}",
                String::from_utf8_lossy(
                    &Command::new("ps")
                        .arg("-ef")
                        .output()
                        .map_or_else(|_| Vec::new(), |o| o.stdout)
                )
            ),
        };
        assert!(
            v.size() >= acked,
            "{ctx}: {store} reopened at {} below the acknowledged {acked}",
            v.size()
        );
        let report = v
            .fsck(&mut |_, _| {})
            .unwrap_or_else(|e| panic!("{ctx}: fsck {store}: {e}"));
        assert_eq!(report.size, v.size(), "{ctx}: fsck {store}: {report:?}");
    }
}

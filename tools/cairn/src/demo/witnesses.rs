//! The demo's witnesses (docs/witness.md): three witness keys, a 2-of-3 policy in the signer's
//! `witnesses.toml` and in every simulated device; two witnesses run as their own `cairn-witness
//! serve` processes (the notified body and the OEM's auditor), the third (the OEM's second site)
//! is down for the whole demo, so every delivery goes out with two cosignatures and the status
//! names the missing one.
//!
//! After each transfer bundle, the relay forwards the new checkpoint to the witnesses of its
//! `[witnesses]` policy (the signer's file) and delivers only once two cosigned it; the
//! cosignatures come back to the signer from the relay's `/log/checkpoint` (`cairn witness
//! attach`). The pack's last checkpoint, which never crosses to the relay, goes to the witnesses
//! from the signer's side over the C2SP tlog-witness HTTP API (`POST /add-checkpoint`; the offline
//! path is `cairn witness request`, `cairn-witness cosign`, `cairn witness attach`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use cairn_signer::appliance::Appliance;
use cairn_signer::witness::{self, Policy, PolicyFile, WitnessEntry};
use cairn_verifier::witness::report::QuorumReport;

use super::ORIGIN;

/// The demo's witnesses: name, and whether it runs (the third is down).
const WITNESSES: [(&str, bool); 3] = [
    ("witness.example/notified-body", true),
    ("witness.example/oem-auditor", true),
    ("witness.example/oem-site-2", false),
];
/// k of the policy.
pub(super) const THRESHOLD: usize = 2;

/// The running witnesses, stopped when dropped.
pub(super) struct Witnesses {
    /// Every witness's verifier key, in policy order (what devices pin).
    pub(super) vkeys: Vec<String>,
    /// The policy file (a copy of the signer's, for `cairn audit verify --witnesses`).
    pub(super) policy_file: PathBuf,
    running: Vec<(String, SocketAddr, Child)>,
}

impl Witnesses {
    /// Makes the three keys, writes the policy to the signer's home, starts the two witnesses,
    /// each following the signer's log and the relay's own log (`relay_log`: its origin, and the
    /// data directory where the relay key is made first).
    pub(super) fn start(
        dir: &Path,
        appliance: &Appliance,
        relay_log: (&str, &Path),
    ) -> anyhow::Result<Self> {
        let bin = std::env::current_exe()?
            .parent()
            .map(|p| p.join("cairn-witness"))
            .filter(|p| p.exists())
            .context("cairn-witness is not next to cairn (cargo build -p cairn-witness)")?;
        let root = dir.join("witnesses");
        std::fs::create_dir_all(&root)?;
        // The log's public key as each witness pins it (SubjectPublicKeyInfo, PEM).
        let log_pem = root.join("log-key.pem");
        let public = appliance
            .vault()
            .log_key()?
            .context("the signer's log has no key yet")?;
        let pem =
            der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &public.spki_der())
                .map_err(|e| anyhow!("encoding the log key: {e}"))?;
        std::fs::write(&log_pem, pem)?;
        // The relay key, made now as the relay's first start would make it, so that the
        // witnesses follow the relay's log from its first checkpoint.
        cairn_relay::statelog::StateLog::public_key_of(relay_log.1)
            .context("making the relay key")?;
        let relay_pem = relay_log.1.join(cairn_relay::statelog::PUBLIC_KEY_FILE);
        let logs = [
            (ORIGIN, log_pem.as_path()),
            (relay_log.0, relay_pem.as_path()),
        ];

        let mut vkeys = Vec::new();
        let mut running = Vec::new();
        let mut entries = Vec::new();
        for (name, runs) in WITNESSES {
            let home = root.join(crate::witness::file_name(name));
            std::fs::create_dir_all(&home)?;
            let key = home.join("key");
            let made = Command::new(&bin)
                .args(["keygen", "--name", name, "--key"])
                .arg(&key)
                .output()
                .context("running cairn-witness keygen")?;
            ensure!(
                made.status.success(),
                "cairn-witness keygen: {}",
                String::from_utf8_lossy(&made.stderr)
            );
            let vkey = String::from_utf8(made.stdout)?.trim().to_owned();
            let mut url = None;
            if runs {
                let (addr, child) = serve(&bin, &home, name, &key, &logs)?;
                url = Some(format!("http://{addr}/"));
                running.push((name.to_owned(), addr, child));
            }
            entries.push(WitnessEntry {
                vkey: vkey.clone(),
                url,
            });
            vkeys.push(vkey);
        }
        let policy = toml::to_string(&PolicyFile {
            threshold: THRESHOLD,
            witness: entries,
        })?;
        std::fs::write(appliance.home().join(witness::POLICY_FILE), &policy)?;
        let policy_file = dir.join(witness::POLICY_FILE);
        std::fs::write(&policy_file, &policy)?;
        Ok(Self {
            vkeys,
            policy_file,
            running,
        })
    }

    /// The names of the witnesses that run.
    pub(super) fn running(&self) -> impl Iterator<Item = &str> {
        self.running.iter().map(|(n, _, _)| n.as_str())
    }

    /// Sends the signer's latest checkpoint to every running witness and attaches what they
    /// return; returns the checkpoint's standing against the policy (a quorum, or an error).
    pub(super) fn cosign(&self, appliance: &Appliance) -> anyhow::Result<(u64, QuorumReport)> {
        let policy = Policy::load(appliance.home())?.context("no witness policy")?;
        let vault = appliance.vault();
        for (name, addr, _) in &self.running {
            let mut request = witness::requests(vault, &policy, None)?
                .into_iter()
                .find(|r| r.witness == *name)
                .context("a running witness is not in the policy")?;
            let mut response = post(*addr, &request.body)?;
            if response.0 == 409 {
                // The witness's size is not the one assumed (tlog-witness): its own, in the body.
                let size: u64 = response.1.trim().parse().context("409 without a size")?;
                request = witness::requests(vault, &policy, Some((name.as_str(), size)))?
                    .into_iter()
                    .find(|r| r.witness == *name)
                    .context("a running witness is not in the policy")?;
                response = post(*addr, &request.body)?;
            }
            let (status, lines) = response;
            if status != 200 {
                bail!("witness {name} answered {status}: {}", lines.trim());
            }
            let note = vault
                .checkpoint(request.size)?
                .context("the checkpoint sent is gone")?;
            witness::attach(vault, &policy, &format!("{note}{lines}"), name)?;
        }
        let status = witness::status(vault, &policy)?;
        ensure!(
            status.report.met(),
            "checkpoint {}: {}",
            status.size,
            status.report.summary()
        );
        Ok((status.size, status.report))
    }
}

/// Waits until the relay gathered a quorum on its latest checkpoint (it forwards it to the
/// witnesses after an import), then attaches the served checkpoint `served` (the relay's
/// `/log/checkpoint`) to the signer's; returns the signer's checkpoint against the policy.
pub(super) fn through_relay(
    appliance: &Appliance,
    relay: &cairn_relay::Relay,
    served: &Path,
) -> anyhow::Result<(u64, QuorumReport)> {
    let started = std::time::Instant::now();
    loop {
        let view = relay
            .witness_view()
            .context("the relay has no [witnesses]")?;
        if !view.waiting() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the relay's witnesses: {}", view.summary());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let policy = Policy::load(appliance.home())?.context("no witness policy")?;
    let note =
        std::fs::read_to_string(served).with_context(|| format!("reading {}", served.display()))?;
    let attached = witness::attach(appliance.vault(), &policy, &note, "the relay")?;
    ensure!(
        attached.report.met(),
        "checkpoint {}: {}",
        attached.size,
        attached.report.summary()
    );
    Ok((attached.size, attached.report))
}

/// Waits until the relay's witnesses cosigned its own log up to where it stands now (the relay
/// asks them every second in the demo), then returns its device-state bundle, which ends at the
/// relay log's latest checkpoint with a quorum (`GET /api/v1/state-bundle`), and that checkpoint
/// against the policy.
pub(super) fn relay_state(
    relay: &cairn_relay::Relay,
    policy_file: &Path,
) -> anyhow::Result<(cairn_vault::TransferBundle, QuorumReport)> {
    let target = relay.engine().log().vault().size();
    let started = std::time::Instant::now();
    loop {
        let view = relay
            .relay_log_witness_view()
            .context("the relay does not witness its log ([witnesses] relay_log)")?;
        if view.witnessed >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the relay log's witnesses: {}", view.summary());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bundle = relay.state_bundle(0, true)?;
    let policy = Policy::read(policy_file)?.context("no witness policy")?;
    let report = {
        let engine = relay.engine();
        policy.report(&bundle.checkpoint, &engine.log().log_key()?)?
    };
    ensure!(
        report.met(),
        "the relay log's checkpoint: {}",
        report.summary()
    );
    Ok((bundle, report))
}

impl Drop for Witnesses {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `cairn-witness serve` on a free port; returns its address once it listens.
fn serve(
    bin: &Path,
    home: &Path,
    name: &str,
    key: &Path,
    logs: &[(&str, &Path)],
) -> anyhow::Result<(SocketAddr, Child)> {
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--state")
        .arg(home.join("state"))
        .arg("--key")
        .arg(key)
        .args(["--name", name, "--listen", "127.0.0.1:0"]);
    for (origin, pem) in logs {
        command
            .arg("--log")
            .arg(format!("{origin}={}", pem.display()));
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cairn-witness serve")?;
    let stderr = child.stderr.take().context("witness stderr")?;
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // The rest of its standard error (a storage failure, say) is drained, never a broken pipe.
    std::thread::spawn(move || reader.lines().for_each(drop));
    let addr = line
        .trim()
        .rsplit_once(" listening on ")
        .and_then(|(_, a)| a.split(", ").next())
        .and_then(|a| a.parse().ok());
    if let Some(addr) = addr {
        return Ok((addr, child));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("cairn-witness {name} did not start: {}", line.trim())
}

/// `POST /add-checkpoint` over HTTP/1.1 (the demo's witnesses listen on 127.0.0.1): the status
/// and the body.
fn post(addr: SocketAddr, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the witness at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, rest) = response
        .split_once("\r\n\r\n")
        .context("the witness's response has no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the witness's response has no status")?;
    Ok((status, rest.to_owned()))
}

//! `cargo bench -p cairn-signer --bench signer`: the signer's figures against their baselines,
//! measured in the same run on this machine (issue "Signer", Measure):
//!
//! 1. Signatures/s through `HsmKey` (`signature::Signer`: SHA-256 on the host, `CKM_ECDSA` in the
//!    token) against a bare `C_Sign` loop with the same key and mechanism on the same session, and
//!    against `openssl speed ecdsap256` (software, one core).
//! 2. Release signing of a 64 MiB image (stream hash, statement, HSM signature, log append with a
//!    new checkpoint) against `sha256sum` of the same file; raw, and in MCUboot format (the
//!    firmware streamed once into the signed image, one hash pass for both of its digests, the
//!    HSM's signature of its SHA256 TLV, the statement, the log append).
//!
//! 3. The wall time of a whole 2-of-3 ceremony (token initialised, three keys generated and read
//!    back, three certificates, the record logged, three shares sealed with the cheapest Argon2id).
//!
//! Medians of `CAIRN_BENCH_ROUNDS` rounds (default 7; ceremonies: at most 3). The module is the one
//! `CAIRN_TEST_PKCS11` chooses (SoftHSM2 by default; `tools/with-tpm2 cargo bench ...` for
//! tpm2-pkcs11), on a fresh token store: the benchmark re-runs itself with that environment, as the
//! tests do. `CAIRN_BENCH_SIGNATURES` sets the signatures per round (default 2000 on SoftHSM2, 300
//! on tpm2-pkcs11, whose software TPM is slower).

#![expect(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "a benchmark report: a failure aborts it, rates are floats"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_signer::appliance::Appliance;
use cairn_signer::ceremony::{self, CeremonyOptions, Custodian, TokenSource};
use cairn_signer::hsm::Module;
use cairn_signer::session::{ReleaseInput, Session};
use cairn_signer::shares::{KdfParams, Passphrase, ShareFile};
use cairn_signer::testtoken::TestModule;
use cairn_verifier::custody::KeyRole;
use cairn_verifier::types::{UnixTime, Version};
use cryptoki::mechanism::Mechanism;

const CHILD: &str = "CAIRN_SIGNER_BENCH_DIR";
const NOW: UnixTime = UnixTime(1_795_651_200);
const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const IMAGE_MIB: usize = 64;

fn passphrase(name: &str) -> Passphrase {
    Passphrase::new(format!("benchmark passphrase of {name}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rounds() -> usize {
    std::env::var("CAIRN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

fn main() {
    common::in_token(CHILD, run);
}

fn signatures(module: TestModule) -> usize {
    std::env::var("CAIRN_BENCH_SIGNATURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match module {
            TestModule::SoftHsm2 => 2_000,
            TestModule::Tpm2 => 300,
        })
}

/// A 2-of-3 ceremony on a fresh token `label`, home `dir/label`.
fn ceremony_on(module: &Module, dir: &Path, label: &str) -> Appliance {
    let opts = CeremonyOptions {
        home: dir.join(label),
        source: TokenSource::Fresh,
        token: label.into(),
        origin: "bench.example/log".into(),
        organization: "Bench OEM".into(),
        threshold: 2,
        custodians: NAMES
            .iter()
            .map(|n| Custodian {
                name: (*n).into(),
                share_path: dir.join(format!("{label}-{n}.share")),
                passphrase: passphrase(n),
            })
            .collect(),
        kdf: KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        },
        now: NOW,
    };
    ceremony::init(module, &opts).unwrap();
    Appliance::open(dir.join(label)).unwrap()
}

fn run(dir: &Path) {
    let tested = TestModule::from_env().unwrap();
    let module = Module::from_env().unwrap();
    let n = rounds();
    // 3. Ceremonies first, each on a fresh token: the last one is the appliance signing below.
    let mut ceremonies = Vec::new();
    let mut appliance = None;
    for i in 0..n.clamp(1, 3) {
        let t = Instant::now();
        appliance = Some(ceremony_on(&module, dir, &format!("bench-{i}")));
        ceremonies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ceremony_ms = median(ceremonies);
    let appliance = appliance.unwrap();
    let label = appliance.state().token.clone();
    let profile = module.profile(Some(&label)).unwrap();
    let shares: Vec<_> = NAMES[..2]
        .iter()
        .map(|n| {
            (
                ShareFile::read(&dir.join(format!("{label}-{n}.share"))).unwrap(),
                passphrase(n),
            )
        })
        .collect();
    let session = appliance.unlock(&module, &shares, NOW).unwrap();
    let key = session.key(KeyRole::Release).unwrap();
    let raw = session.token().raw_session();
    let signatures = signatures(tested);

    println!(
        "cairn-signer benchmark on {} ({}), medians of {n} rounds",
        tested.name(),
        profile
    );
    if tested == TestModule::SoftHsm2 {
        println!("   {}", softhsm_version());
    }
    println!();
    println!("1. ECDSA P-256 signatures/s, {signatures} per round");
    let msg = [0x42u8; 200]; // about a checkpoint note's size
    let digest: [u8; 32] = {
        use sha2::Digest as _;
        sha2::Sha256::digest(msg).into()
    };
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..n {
        // Interleaved, so both see the same machine state.
        let t = Instant::now();
        for _ in 0..signatures {
            let _: p256::ecdsa::Signature = signature::Signer::sign(&key, &msg);
        }
        ours.push(signatures as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..signatures {
            raw.sign(&Mechanism::Ecdsa, key.private_handle(), &digest)
                .unwrap();
        }
        bare.push(signatures as f64 / t.elapsed().as_secs_f64());
    }
    let (ours, bare) = (median(ours), median(bare));
    let (openssl_sign, openssl_verify) = common::openssl_speed();
    println!("   cairn HsmKey (SHA-256 + C_Sign) {ours:>10.0} /s");
    println!(
        "   bare cryptoki C_Sign loop       {bare:>10.0} /s   ratio {:.3} (goal >= 0.9)",
        ours / bare
    );
    println!(
        "   openssl speed ecdsap256 sign    {openssl_sign:>10.0} /s   ratio {:.3}",
        ours / openssl_sign
    );
    println!("   openssl speed ecdsap256 verify  {openssl_verify:>10.0} /s");
    println!();
    release_signing(&session, dir, n);
    println!();
    println!("3. ceremony init, 2-of-3 (fresh token, 3 keys, 3 certificates, record, 3 shares)");
    println!(
        "   wall time                             {ceremony_ms:>8.1} ms   (median of {})",
        n.clamp(1, 3)
    );
}

fn release_signing(session: &Session<'_>, dir: &Path, n: usize) {
    println!("2. release signing of a {IMAGE_MIB} MiB image vs sha256sum");
    let image = dir.join("image.bin");
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut data = Vec::with_capacity(IMAGE_MIB << 20);
    for i in 0..IMAGE_MIB {
        data.extend(block.iter().map(|b| b ^ (i as u8)));
    }
    std::fs::write(&image, &data).unwrap();
    drop(data);
    let mut sign = Vec::new();
    let mut sign_mcuboot = Vec::new();
    let mut sum = Vec::new();
    for round in 0..n {
        let input = ReleaseInput {
            release_id: format!("bench-fw-{round}"),
            product: "Smart Controller".into(),
            family: "STM32H5".into(),
            hardware_revisions: vec!["rev-c".into()],
            version: Version::new(2, 4, 1),
            security_epoch: 7,
            support_until: UnixTime(NOW.0 + 5 * 365 * 86_400),
            advisories: vec!["CVE-2026-12345".into()],
            artifact: None,
        };
        let t = Instant::now();
        session.sign_release(&image, &input, NOW).unwrap();
        sign.push(t.elapsed());
        let out = dir.join("image.signed.bin");
        let source = cairn_signer::mcuboot::McubootSource::Firmware {
            layout: cairn_verifier::mcuboot::write::Layout::default(),
            out: out.clone(),
        };
        let input = ReleaseInput {
            release_id: format!("bench-mcuboot-{round}"),
            ..input
        };
        let t = Instant::now();
        session
            .sign_mcuboot_release(&image, &input, &source, NOW)
            .unwrap();
        sign_mcuboot.push(t.elapsed());
        std::fs::remove_file(&out).unwrap();
        let t = Instant::now();
        let out = Command::new("sha256sum").arg(&image).output().unwrap();
        assert!(out.status.success());
        sum.push(t.elapsed());
    }
    let ms = |d: Vec<Duration>| median(d.into_iter().map(|d| d.as_secs_f64() * 1e3).collect());
    let (sign, sign_mcuboot, sum) = (ms(sign), ms(sign_mcuboot), ms(sum));
    println!("   cairn release sign (hash + HSM + log) {sign:>8.1} ms");
    println!("   ... --format mcuboot (image written)  {sign_mcuboot:>8.1} ms");
    println!(
        "   sha256sum                             {sum:>8.1} ms   ratio {:.3}, mcuboot {:.3} (goal <= 1.2)",
        sign / sum,
        sign_mcuboot / sum
    );
}

fn softhsm_version() -> String {
    Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .map_or_else(
            |_| "?".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

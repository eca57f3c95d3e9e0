//! `cairn-witness`: run a witness (HTTP), cosign offline from files, or make a key.

use std::path::PathBuf;

use actix_web::{App, HttpServer, web};
use anyhow::{Context, Result, bail};
use cairn_verifier::crypto::PublicKey;
use cairn_witness::witness::now;
use cairn_witness::{Store, TrustedLog, Witness, WitnessSecret};
use p256::pkcs8::DecodePublicKey;

const USAGE: &str = "\
usage:
  cairn-witness keygen --key FILE --name NAME
      make a new Ed25519 witness key (mode 0600), print its C2SP vkey
  cairn-witness vkey --key FILE --name NAME
      print the vkey of an existing key
  cairn-witness serve --state DIR --key FILE --name NAME --log ORIGIN=PEM... --listen ADDR
      serve POST /add-checkpoint (C2SP tlog-witness)
  cairn-witness cosign --state DIR --key FILE --name NAME --log ORIGIN=PEM... --request FILE [--out FILE]
      offline: check an add-checkpoint body from a file against the same state, write the
      cosigned checkpoint (stdout without --out)

PEM: the log's checkpoint public key (SubjectPublicKeyInfo, P-256).";

#[derive(Default)]
struct Args {
    state: Option<PathBuf>,
    key: Option<PathBuf>,
    name: Option<String>,
    logs: Vec<(String, PathBuf)>,
    listen: Option<String>,
    request: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args::default();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--state" => a.state = Some(value()?.into()),
            "--key" => a.key = Some(value()?.into()),
            "--name" => a.name = Some(value()?),
            "--listen" => a.listen = Some(value()?),
            "--request" => a.request = Some(value()?.into()),
            "--out" => a.out = Some(value()?.into()),
            "--log" => {
                let v = value()?;
                let (origin, pem) = v
                    .rsplit_once('=')
                    .with_context(|| format!("--log {v:?}: expected ORIGIN=PEM"))?;
                a.logs.push((origin.to_owned(), pem.into()));
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(a)
}

fn need<T>(v: Option<T>, flag: &str) -> Result<T> {
    v.with_context(|| format!("{flag} is required\n\n{USAGE}"))
}

fn witness(a: &Args) -> Result<Witness> {
    let secret = WitnessSecret::load(
        &need(a.key.clone(), "--key")?,
        &need(a.name.clone(), "--name")?,
    )?;
    let mut logs = Vec::new();
    for (origin, pem) in &a.logs {
        let text = std::fs::read_to_string(pem)
            .with_context(|| format!("reading the key of log {origin:?} from {}", pem.display()))?;
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&text)
            .with_context(|| format!("{} is not a P-256 public key (PEM)", pem.display()))?;
        let point = key.to_sec1_point(false);
        let public = PublicKey::from_sec1_uncompressed(point.as_bytes())
            .context("P-256 key without an uncompressed point")?;
        logs.push(TrustedLog {
            origin: origin.clone(),
            name: origin.clone(),
            public,
        });
    }
    if logs.is_empty() {
        bail!("at least one --log ORIGIN=PEM is required\n\n{USAGE}");
    }
    let store = Store::open(&need(a.state.clone(), "--state")?)?;
    Ok(Witness::new(secret, logs, store))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let a = parse(args)?;
    match command.as_str() {
        "keygen" => {
            let secret = WitnessSecret::generate(&need(a.key, "--key")?, &need(a.name, "--name")?)?;
            println!("{}", secret.vkey());
        }
        "vkey" => {
            let secret = WitnessSecret::load(&need(a.key, "--key")?, &need(a.name, "--name")?)?;
            println!("{}", secret.vkey());
        }
        "cosign" => {
            let w = witness(&a)?;
            let path = need(a.request.clone(), "--request")?;
            let body =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let cosigned = w
                .add_checkpoint(&body, now())
                .with_context(|| format!("{} not cosigned", path.display()))?;
            match &a.out {
                Some(out) => std::fs::write(out, &cosigned.note)
                    .with_context(|| format!("writing {}", out.display()))?,
                None => print!("{}", cosigned.note),
            }
        }
        "serve" => {
            let w = web::Data::new(witness(&a)?);
            let listen = need(a.listen.clone(), "--listen")?;
            actix_web::rt::System::new().block_on(async move {
                let name = w.secret().name().to_owned();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(w.clone())
                        .configure(cairn_witness::http::routes)
                })
                .bind(&listen)
                .with_context(|| format!("listening on {listen}"))?;
                let addrs: Vec<String> = server.addrs().iter().map(ToString::to_string).collect();
                eprintln!("cairn-witness: {name} listening on {}", addrs.join(", "));
                server.run().await.context("serving")
            })?;
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}

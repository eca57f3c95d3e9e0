//! `cairn-relay --config relay.toml`: the online relay (docs/relay.md).

use std::path::PathBuf;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use cairn_relay::{Config, Relay, routes};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let config = match (args.next(), args.next()) {
        (Some(flag), Some(path)) if flag == "--config" => PathBuf::from(path),
        _ => anyhow::bail!("usage: cairn-relay --config relay.toml"),
    };
    // Refuses a listener beyond the loopback interface without TLS (config::Error::PlainHttp).
    let config = Config::load(&config)?;
    let tls = match config.http.tls() {
        Some((cert, key)) => Some(cairn_relay::tls::server_config(cert, key)?),
        None => None,
    };
    let relay = std::sync::Arc::new(Relay::open(&config)?);
    // The rollout engine and the MQTT link run until the server stops.
    let _runner = relay.start()?;
    // A store that failed a write refuses every write after it; the process stops, so that its
    // restart reopens the store and recovers from what is durable (Relay::poisoned).
    let watched = std::sync::Arc::clone(&relay);
    std::thread::Builder::new()
        .name("store-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if let Some(why) = watched.poisoned() {
                    cairn_relay::say!("cairn-relay: stopping: {why}");
                    std::process::exit(cairn_relay::EXIT_POISONED);
                }
            }
        })
        .context("starting the store watch")?;
    let relay = web::Data::from(relay);
    let size = relay.vault().size();
    let server = HttpServer::new(move || App::new().app_data(relay.clone()).configure(routes));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(&config.listen, tls),
        None => server.bind(&config.listen),
    }
    .with_context(|| format!("listening on {}", config.listen))?;
    // The bound address, not the configured one: with port 0 the system chose it.
    let addrs: Vec<String> = server.addrs().iter().map(ToString::to_string).collect();
    cairn_relay::say!(
        "cairn-relay: mirror of {} at {size} entries, listening on {} ({scheme})",
        config.log.origin,
        addrs.join(", ")
    );
    server.run().await.context("serving")
}

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
    let config = Config::load(&config)?;
    let relay = std::sync::Arc::new(Relay::open(&config)?);
    // The rollout engine and the MQTT link run until the server stops.
    let _runner = relay.start()?;
    let relay = web::Data::from(relay);
    eprintln!(
        "cairn-relay: mirror of {} at {} entries, listening on {}",
        config.log.origin,
        relay.vault().size(),
        config.listen
    );
    HttpServer::new(move || App::new().app_data(relay.clone()).configure(routes))
        .bind(&config.listen)
        .with_context(|| format!("listening on {}", config.listen))?
        .run()
        .await
        .context("serving")
}

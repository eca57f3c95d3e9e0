//! The relay's configuration file (docs/relay.md, "Configuration"; `tools/relay/src/config.rs`,
//! compiled here from the relay's source file) on arbitrary text: `Config::parse` never panics,
//! and a configuration it accepts keeps its checks: at least one operator, every operator name an
//! actor id and every token hash 32 bytes of hex, TLS files both set or neither, without TLS only
//! a loopback listener, and every path resolved against the file's directory. `listen` values that
//! are names (not addresses) are resolved by the system resolver, as the relay does: run it
//! offline.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: cairn_fuzz::Counting = cairn_fuzz::Counting;

/// The relay's modules, from its source files (the relay crate links RocksDB, which the
/// sanitizer build does not need); `config` names `crate::broker::RELAY_CLIENT` and the
/// limits of `crate::limits`.
#[expect(dead_code, reason = "the fuzz target uses the parser, not the broker")]
#[path = "../../tools/relay/src/broker.rs"]
mod broker;
#[expect(
    dead_code,
    reason = "the fuzz target uses the parser, not the key reader"
)]
#[path = "../../tools/relay/src/config.rs"]
mod config;
#[expect(
    dead_code,
    reason = "the fuzz target uses the limits' parsers, not the pacing"
)]
#[path = "../../tools/relay/src/limits.rs"]
mod limits;

const FILE: &str = "/etc/cairn/relay.toml";

/// The `toml` crate's parser keeps every error it recovers from, and its buffers grow by doubling:
/// found by the long runs of issue 21, 351 KB for a malformed 477-byte file (about 300 bytes per
/// input byte as the file grows) and 742 KB for a 901-byte one. Linear, so bounded with its own
/// budget; the relay reads at most `MAX_CONFIG_BYTES` (64 KiB).
const TOML_BYTES_PER_INPUT_BYTE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::bounded_by(TOML_BYTES_PER_INPUT_BYTE, data.len(), || {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(c) = config::Config::parse(text, Path::new(FILE)) else {
            return;
        };
        assert!(!c.operators.is_empty());
        for (name, hash) in &c.operators {
            assert!(cairn_verifier::types::Id::new(&format!("operator:{name}")).is_some());
            assert_eq!(hex::decode(hash).map(|b| b.len()), Ok(32));
        }
        assert_eq!(c.http.tls_cert.is_some(), c.http.tls_key.is_some());
        for p in [&c.data_dir, &c.log.key, &c.log.release_key]
            .into_iter()
            .chain(c.http.tls_cert.as_ref())
            .chain(c.http.tls_key.as_ref())
        {
            // Relative to the file's directory, or absolute as written.
            assert!(p.is_absolute(), "{} is not resolved", p.display());
        }
        if let Some(m) = &c.mqtt {
            for p in [&m.ca, &m.cert, &m.key] {
                assert!(p.is_absolute(), "{} is not resolved", p.display());
            }
        }
    });
});

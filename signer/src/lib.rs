//! cairn's air-gapped signer: the appliance custodians trust with the keys.
//!
//! - [`hsm`]: the PKCS#11 boundary (cryptoki): token initialization, key generation inside the
//!   token (sensitive, never extractable), signing through `signature::Signer`.
//! - [`shares`]: the token PIN split k-of-n with Shamir's scheme, each share sealed to its
//!   custodian's passphrase (Argon2id + ChaCha20-Poly1305); every check before any login.
//! - [`certs`]: the root CA and the release and log key certificates (X.509, RFC 5280).
//! - [`appliance`]: the appliance's home and state; [`ceremony`]: the key ceremony;
//!   [`session`]: signing sessions, releases, key rotation and revocation; all logged in the vault
//!   under log-key checkpoints.
//! - [`mcuboot`]: releases in MCUboot format, the image the STM32H5's own secure boot checks.
//! - [`uri`]: RFC 7512 `pkcs11:` URIs.
//! - [`witness`]: the witness policy, requests to witnesses and their cosignatures brought back.
//!
//! The procedure custodians follow is docs/ceremony.md; what the signer defends against is
//! docs/threat-model.md.

pub mod appliance;
pub mod audit;
pub mod ceremony;
pub mod certs;
mod error;
pub mod hsm;
pub mod interrupted;
pub mod mcuboot;
mod parallel;
pub mod registry;
pub mod relaystate;
pub mod resume;
pub mod rollout;
pub mod session;
pub mod shares;
#[cfg(feature = "testfleet")]
pub mod testfleet;
pub mod testtoken;
pub mod uri;
pub mod witness;

pub use error::{Error, Result};

//! cairn's wire formats and the device boot check.
//!
//! This crate is what runs on the device (STM32H5, Arm Cortex-M33) at boot, and it owns every byte
//! format the rest of cairn produces, so that the device, the signer, the vault and the relay cannot
//! disagree about them. It is `#![no_std]`, uses no allocator, and returns an error instead of
//! panicking on any input. Encoders for the host side are behind the `alloc` feature.
//!
//! | module | format | specification |
//! |---|---|---|
//! | [`merkle`] | leaf/node hashes, inclusion and consistency proofs | RFC 9162 §2.1 |
//! | [`note`] | checkpoint in a signed note, ECDSA P-256 signature line | C2SP tlog-checkpoint, signed-note |
//! | [`witness`] | witness cosignatures, the k-of-n witness policy | C2SP tlog-cosignature, signed-note |
//! | [`tlog_witness`] | the witness's `add-checkpoint` request body | C2SP tlog-witness |
//! | [`cose`] | COSE_Sign1 with ES256 | RFC 9052 §4.2, §4.4; RFC 9053 §2.1 |
//! | [`entry`] | the header of every log entry: format version and kind | RFC 8949 §4.2.1 |
//! | [`statement`] | log entries: release statement, per-device manifest | RFC 8949 §4.2.1 (deterministic CBOR) |
//! | [`campaign`] | gate approvals, device status reports, the relay's device and campaign events | RFC 8949 §4.2.1 |
//! | [`floor`] | the `cairn-campaign-floor` checkpoint extension line | formats.md §2.2, §5.1 |
//! | [`delivery`] | the envelope a device receives | RFC 8949 §4.2.1 |
//! | [`boot`] | the boot check, in design order | design.md "Device boot check" |
//! | [`mcuboot`] | MCUboot image: header, protected TLVs, hash, key hash, ECDSA signature | MCUboot docs/design.md "Image format" |
//!
//! The byte-level description of every format is in `docs/formats.md`.
//!
//! ```
//! use cairn_verifier::boot::{verify_delivery, DeviceIdentity, MemoryImage, StoredState, TrustAnchors};
//! use cairn_verifier::crypto::Software;
//! # use cairn_verifier::test_support::Fixture;
//! # let f = Fixture::new();
//! # let (delivery, image) = (f.delivery(), f.image.clone());
//! // `delivery` arrived over the air; `image` is what was written to the update slot.
//! let device = DeviceIdentity {
//!     device_id: "dev-000001",
//!     product: "Smart Controller",
//!     family: "STM32H5",
//!     hardware_revision: "rev-c",
//!     current_version: cairn_verifier::types::Version::new(2, 3, 0),
//! };
//! let anchors: TrustAnchors<'_> = f.anchors();
//! let state = StoredState::default();
//! let verdict = verify_delivery(&delivery, &anchors, &device, &state, &mut MemoryImage(&image), &Software)
//!     .expect("a valid delivery is accepted");
//! assert_eq!(verdict.release_id.as_str(), "controller-fw-2.4.1");
//! let new_state = state.after(&verdict); // the board persists this once the image is installed
//! assert_eq!(new_state.installed.map(|i| i.version.to_string()), Some("2.4.1".into()));
//! ```
#![no_std]
#![deny(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod boot;
pub mod campaign;
pub mod cbor;
pub mod cose;
pub mod counts;
pub mod crypto;
pub mod custody;
pub mod delivery;
pub mod entry;
pub mod error;
pub mod floor;
pub mod image;
pub mod mcuboot;
pub mod merkle;
pub mod note;
#[cfg(feature = "alloc")]
pub mod pack;
pub mod rollout;
pub mod statement;
pub mod tlog_witness;
#[cfg(feature = "alloc")]
pub mod transfer;
pub mod types;
pub mod witness;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use error::Error;

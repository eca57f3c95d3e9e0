//! The crypto backend the firmware runs the boot check with, chosen at build time by feature.
//! Every backend runs the same cases; `cargo xtask bench-m33` measures them side by side.
//!
//! ECDSA P-256: the verifier's `Software` (RustCrypto p256 0.14), or `p256-cm4`, or p256 0.13.
//! Ed25519 (witness cosignatures): the verifier's `Software` (ed25519-dalek, with or without its
//! precomputed tables: `ed25519-fast`), or `ed25519-salty`. SHA-256 is always RustCrypto sha2.

#[cfg(not(any(feature = "p256-cm4", feature = "p256-013", feature = "ed25519-salty")))]
pub use cairn_verifier::crypto::Software as Backend;

#[cfg(any(feature = "p256-cm4", feature = "p256-013", feature = "ed25519-salty"))]
pub use combined::Backend;

#[cfg(any(feature = "p256-cm4", feature = "p256-013", feature = "ed25519-salty"))]
mod combined {
    use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software};
    use cairn_verifier::types::Hash;

    /// The P-256 and Ed25519 implementations the features chose, SHA-256 by RustCrypto `sha2`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Backend;

    impl Crypto for Backend {
        type Sha256 = <Software as Crypto>::Sha256;

        fn sha256(&self) -> Self::Sha256 {
            Software.sha256()
        }

        fn verify_p256(&self, key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
            super::p256::verify(key, digest, signature)
        }

        fn verify_ed25519(&self, key: &[u8; 32], message: &[&[u8]], signature: &[u8; 64]) -> bool {
            super::ed25519::verify(key, message, signature)
        }
    }
}

#[cfg(all(
    feature = "ed25519-salty",
    not(any(feature = "p256-cm4", feature = "p256-013"))
))]
mod p256 {
    use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software};
    use cairn_verifier::types::Hash;

    pub fn verify(key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
        Software.verify_p256(key, digest, signature)
    }
}

/// ECDSA P-256 verification by `p256-cm4` (assembly for the DSP extension of Armv7E-M and
/// Armv8-M Mainline, which the Cortex-M33 has).
#[cfg(feature = "p256-cm4")]
mod p256 {
    use cairn_verifier::crypto::{PublicKey, Signature};
    use cairn_verifier::types::Hash;

    /// A 32-byte big-endian integer as p256-cm4's eight little-endian 32-bit words.
    fn words(be: &[u8]) -> [u32; 8] {
        let mut out = [0u32; 8];
        for (i, w) in out.iter_mut().enumerate() {
            let at = 32 - 4 * (i + 1);
            *w = u32::from_be_bytes([be[at], be[at + 1], be[at + 2], be[at + 3]]);
        }
        out
    }

    pub fn verify(key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
        let (x, y) = key.0.split_at(32);
        let (r, s) = signature.0.split_at(32);
        ::p256_cm4::verify(&words(x), &words(y), digest, &words(r), &words(s))
    }
}

/// ECDSA P-256 verification by RustCrypto `p256` 0.13.
#[cfg(feature = "p256-013")]
mod p256 {
    use cairn_verifier::crypto::{PublicKey, Signature};
    use cairn_verifier::types::Hash;

    pub fn verify(key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
        use ::p256_013::ecdsa::signature::hazmat::PrehashVerifier;
        let mut sec1 = [4u8; 65];
        sec1[1..].copy_from_slice(&key.0);
        let Ok(vk) = ::p256_013::ecdsa::VerifyingKey::from_sec1_bytes(&sec1) else {
            return false;
        };
        let Ok(sig) = ::p256_013::ecdsa::Signature::from_slice(&signature.0) else {
            return false;
        };
        vk.verify_prehash(digest, &sig).is_ok()
    }
}

/// Ed25519 by the verifier's own ed25519-dalek (streamed, no buffer).
#[cfg(all(
    any(feature = "p256-cm4", feature = "p256-013"),
    not(feature = "ed25519-salty")
))]
mod ed25519 {
    use cairn_verifier::crypto::{Crypto, Software};

    pub fn verify(key: &[u8; 32], message: &[&[u8]], signature: &[u8; 64]) -> bool {
        Software.verify_ed25519(key, message, signature)
    }
}

/// Ed25519 by salty (field arithmetic in Cortex-M4 assembly, umaal). salty takes the message in
/// one piece, so the parts are copied into a stack buffer (a cosigned message is the checkpoint
/// text plus about 30 bytes; a longer one is refused). salty 0.3 does not check that `s` is below
/// the group order L (RFC 8032 §5.1.7), so this adapter does (docs/witness.md §7).
#[cfg(feature = "ed25519-salty")]
mod ed25519 {
    const MAX_MESSAGE: usize = 1024;
    /// L, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// Whether the little-endian `s` is below L (compared from the most significant byte).
    fn canonical(s: &[u8]) -> bool {
        for (a, b) in s.iter().rev().zip(L.iter().rev()) {
            if a != b {
                return a < b;
            }
        }
        false
    }

    pub fn verify(key: &[u8; 32], message: &[&[u8]], signature: &[u8; 64]) -> bool {
        if !canonical(&signature[32..]) {
            return false;
        }
        let mut buf = [0u8; MAX_MESSAGE];
        let mut len = 0usize;
        for part in message {
            let Some(dst) = buf.get_mut(len..len + part.len()) else {
                return false;
            };
            dst.copy_from_slice(part);
            len += part.len();
        }
        let Ok(public) = salty::PublicKey::try_from(key) else {
            return false;
        };
        public
            .verify(&buf[..len], &salty::Signature::from(signature))
            .is_ok()
    }
}

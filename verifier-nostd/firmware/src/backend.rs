//! The crypto backend the firmware runs the boot check with, chosen at build time by feature.
//! Every backend runs the same cases; `cargo xtask bench-m33` measures them side by side.

#[cfg(not(any(feature = "p256-cm4", feature = "p256-013")))]
pub use cairn_verifier::crypto::Software as Backend;
#[cfg(feature = "p256-013")]
pub use p256_013::Backend;
#[cfg(feature = "p256-cm4")]
pub use p256_cm4::Backend;

#[cfg(feature = "p256-cm4")]
mod p256_cm4 {
    use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software};
    use cairn_verifier::types::Hash;

    /// ECDSA P-256 verification by `p256-cm4` (assembly for the DSP extension of Armv7E-M and
    /// Armv8-M Mainline, which the Cortex-M33 has), SHA-256 by RustCrypto `sha2`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Backend;

    /// A 32-byte big-endian integer as p256-cm4's eight little-endian 32-bit words.
    fn words(be: &[u8]) -> [u32; 8] {
        let mut out = [0u32; 8];
        for (i, w) in out.iter_mut().enumerate() {
            let at = 32 - 4 * (i + 1);
            *w = u32::from_be_bytes([be[at], be[at + 1], be[at + 2], be[at + 3]]);
        }
        out
    }

    impl Crypto for Backend {
        type Sha256 = sha2::Sha256;

        fn sha256(&self) -> sha2::Sha256 {
            Software.sha256()
        }

        fn verify_p256(&self, key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
            let (x, y) = key.0.split_at(32);
            let (r, s) = signature.0.split_at(32);
            ::p256_cm4::verify(&words(x), &words(y), digest, &words(r), &words(s))
        }
    }
}

#[cfg(feature = "p256-013")]
mod p256_013 {
    use cairn_verifier::crypto::{Crypto, PublicKey, Signature, Software};
    use cairn_verifier::types::Hash;

    /// ECDSA P-256 verification by RustCrypto `p256` 0.13, SHA-256 by `sha2` 0.11.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Backend;

    impl Crypto for Backend {
        type Sha256 = sha2::Sha256;

        fn sha256(&self) -> sha2::Sha256 {
            Software.sha256()
        }

        fn verify_p256(&self, key: &PublicKey, digest: &Hash, signature: &Signature) -> bool {
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
}

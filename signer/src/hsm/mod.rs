//! The PKCS#11 boundary: loading the module, initializing, adopting and opening a token,
//! generating the ceremony's keys inside it, and signing with them (docs/ceremony.md, "Keys on
//! the token").
//!
//! Keys are EC P-256 pairs generated on the token with `CKA_SENSITIVE` and without
//! `CKA_EXTRACTABLE`; a private key never leaves it, and what the module reports of every key is
//! checked before it is used ([`policy`]). Objects are labelled `cairn-<role>-<gen>` and carry
//! `CKA_ID = [role, gen]` (role 0 root, 1 release, 2 log; `gen` counts rotations from 0), and are
//! addressed by RFC 7512 `pkcs11:` URIs built from both.
//!
//! Signing hashes the message with SHA-256 on the host and asks the token for a raw `CKM_ECDSA`
//! signature of the digest: large inputs stream through the host's SHA-256 (SHA-NI) and only 32
//! bytes cross the PKCS#11 boundary.

mod key;
mod policy;
mod profile;
mod token;

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::ExposeSecret as _;

pub use key::HsmKey;
pub use profile::{Lockout, LoginFailures, ModuleFamily, ModuleProfile};
pub use token::{Protection, Token};

use crate::error::{Error, Result, pkcs11};

/// Where SoftHSM2 installs its module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Where tpm2-pkcs11 installs its module on Debian (amd64).
pub const TPM2_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";
/// Environment variable naming the PKCS#11 module (default [`SOFTHSM_MODULE`]).
pub const MODULE_ENV: &str = "CAIRN_PKCS11_MODULE";

/// A loaded and initialized PKCS#11 module.
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Loads the module at `path` and initializes it (OS locking).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let ctx = Pkcs11::new(&path).map_err(|source| Error::Module {
            path: path.clone(),
            source,
        })?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(pkcs11("C_Initialize"))?;
        Ok(Self { ctx, path })
    }

    /// Loads the module named by `CAIRN_PKCS11_MODULE`, or SoftHSM2's.
    pub fn from_env() -> Result<Self> {
        Self::load(
            std::env::var_os(MODULE_ENV)
                .map_or_else(|| PathBuf::from(SOFTHSM_MODULE), PathBuf::from),
        )
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot holding the initialized token labelled `label`.
    pub fn find_token(&self, label: &str) -> Result<Slot> {
        for slot in self
            .ctx
            .get_slots_with_initialized_token()
            .map_err(pkcs11("C_GetSlotList"))?
        {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(pkcs11("C_GetTokenInfo"))?;
            if info.label().trim_end() == label {
                return Ok(slot);
            }
        }
        Err(Error::TokenNotFound(label.into()))
    }

    /// What this module does where modules differ, probed on `slot` (module documentation of
    /// [`ModuleProfile`]).
    pub fn profile_of(&self, slot: Slot) -> Result<ModuleProfile> {
        let info = self.ctx.get_library_info().map_err(pkcs11("C_GetInfo"))?;
        let library = format!(
            "{} {} {}.{}",
            info.manufacturer_id().trim_end(),
            info.library_description().trim_end(),
            info.library_version().major(),
            info.library_version().minor()
        );
        let family = ModuleProfile::recognise(info.manufacturer_id(), info.library_description());
        let (login_failures, lockout) = ModuleProfile::behaviour(family);
        let slot_info = self
            .ctx
            .get_slot_info(slot)
            .map_err(pkcs11("C_GetSlotInfo"))?;
        let token = self
            .ctx
            .get_token_info(slot)
            .map_err(pkcs11("C_GetTokenInfo"))?;
        let ecdsa = self
            .ctx
            .get_mechanism_info(slot, MechanismType::ECDSA)
            .map_err(pkcs11("C_GetMechanismInfo"))?;
        Ok(ModuleProfile {
            library,
            family,
            pin_length: (token.min_pin_length(), token.max_pin_length()),
            hardware_slot: slot_info.hardware_slot(),
            hardware_ecdsa: ecdsa.hardware(),
            ecdsa_key_bits: (ecdsa.min_key_size(), ecdsa.max_key_size()),
            login_failures,
            lockout,
        })
    }

    /// The profile of the token labelled `label`, or (no label) of the first slot with a token.
    pub fn profile(&self, label: Option<&str>) -> Result<ModuleProfile> {
        let slot = match label {
            Some(l) => self.find_token(l)?,
            None => *self
                .ctx
                .get_slots_with_token()
                .map_err(pkcs11("C_GetSlotList"))?
                .first()
                .ok_or(Error::NoFreeSlot)?,
        };
        self.profile_of(slot)
    }

    /// Whether the token has seen a failed user login since the last good one
    /// (`CKF_USER_PIN_COUNT_LOW`), or is locked (`CKF_USER_PIN_LOCKED`). Meaningful only where
    /// the profile says [`LoginFailures::Flags`].
    pub fn failed_logins(&self, label: &str) -> Result<bool> {
        let info = self
            .ctx
            .get_token_info(self.find_token(label)?)
            .map_err(pkcs11("C_GetTokenInfo"))?;
        Ok(info.user_pin_count_low() || info.user_pin_final_try() || info.user_pin_locked())
    }

    /// Refuses a PIN the token cannot take, before the token is touched.
    fn check_pin_len(&self, slot: Slot, what: &str, pin: &AuthPin) -> Result<ModuleProfile> {
        let profile = self.profile_of(slot)?;
        let len = pin.expose_secret().len();
        if profile.accepts_pin_len(len) {
            Ok(profile)
        } else {
            Err(Error::Invalid(format!(
                "the {what} cairn sets is {len} bytes; the token takes {} to {} ({})",
                profile.pin_length.0, profile.pin_length.1, profile.library
            )))
        }
    }

    /// Initializes a fresh token labelled `label` with the security officer PIN `so_pin`, sets
    /// the user PIN to `user_pin`, and returns its slot. Refuses if a token with that label exists.
    pub fn init_token(&self, label: &str, so_pin: &AuthPin, user_pin: &AuthPin) -> Result<Slot> {
        if label.is_empty() || label.len() > 32 {
            return Err(Error::Invalid(format!(
                "token label {label:?} must be 1 to 32 bytes"
            )));
        }
        match self.find_token(label) {
            Ok(_) => return Err(Error::TokenExists(label.into())),
            Err(Error::TokenNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let all = self
            .ctx
            .get_slots_with_token()
            .map_err(pkcs11("C_GetSlotList"))?;
        let initialized = self
            .ctx
            .get_slots_with_initialized_token()
            .map_err(pkcs11("C_GetSlotList"))?;
        let free = all
            .into_iter()
            .find(|s| !initialized.contains(s))
            .ok_or(Error::NoFreeSlot)?;
        self.check_pin_len(free, "user PIN", user_pin)?;
        self.check_pin_len(free, "security officer PIN", so_pin)?;
        self.ctx
            .init_token(free, so_pin, label)
            .map_err(pkcs11("C_InitToken"))?;
        // SoftHSM moves an initialized token to a new slot id: find it again by label.
        let slot = self.find_token(label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(pkcs11("C_OpenSession"))?;
        session
            .login(UserType::So, Some(so_pin))
            .map_err(pkcs11("C_Login"))?;
        session.init_pin(user_pin).map_err(pkcs11("C_InitPIN"))?;
        session.logout().map_err(pkcs11("C_Logout"))?;
        Ok(slot)
    }

    /// Adopts the token labelled `label` that its security officer initialised (no
    /// `C_InitToken`, no SO PIN): logs in with the user PIN the security officer handed over,
    /// refuses a token that already holds cairn keys, then replaces that PIN with `new_pin` by
    /// `C_SetPIN`, and returns the logged-in session.
    pub fn adopt_token(
        &self,
        label: &str,
        initial_pin: &AuthPin,
        new_pin: &AuthPin,
    ) -> Result<Token> {
        let slot = self.find_token(label)?;
        let info = self
            .ctx
            .get_token_info(slot)
            .map_err(pkcs11("C_GetTokenInfo"))?;
        if !info.user_pin_initialized() {
            return Err(Error::Invalid(format!(
                "token {label:?} has no user PIN yet: the security officer sets an initial one \
                 (C_InitPIN) before the ceremony adopts it"
            )));
        }
        self.check_pin_len(slot, "user PIN", new_pin)?;
        let token = self.login(label, initial_pin)?;
        token.refuse_cairn_keys()?;
        token
            .session
            .set_pin(initial_pin, new_pin)
            .map_err(pkcs11("C_SetPIN"))?;
        Ok(token)
    }

    /// Opens a read-write session on the token labelled `label` and logs the user in.
    pub fn login(&self, label: &str, pin: &AuthPin) -> Result<Token> {
        let slot = self.find_token(label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(pkcs11("C_OpenSession"))?;
        session
            .login(UserType::User, Some(pin))
            .map_err(pkcs11("C_Login"))?;
        Ok(Token {
            session,
            label: label.into(),
        })
    }
}

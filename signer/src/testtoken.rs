//! The PKCS#11 module that tests, benchmarks and the demonstration run against, chosen by one
//! environment variable, `CAIRN_TEST_PKCS11` (docs/testing-pkcs11.md):
//!
//! - `softhsm2` (the default): SoftHSM2 with a token directory of its own;
//! - `tpm2`: tpm2-pkcs11 with a store of its own, on the software TPM that `tools/with-tpm2`
//!   started (it exports `CAIRN_TPM2_TCTI` and the session bus's address).
//!
//! Both modules read their configuration once, at `C_Initialize`, and a process initializes a
//! module once: so each test, benchmark or demonstration re-runs itself as a child process with
//! the environment [`TestModule::child_env`] returns for a fresh directory.

use std::ffi::OsString;
use std::path::Path;

use crate::hsm::{MODULE_ENV, SOFTHSM_MODULE, TPM2_MODULE};

/// The variable choosing the module.
pub const TEST_MODULE_ENV: &str = "CAIRN_TEST_PKCS11";
/// The TCTI that `tools/with-tpm2` exports for tpm2-pkcs11 (`TPM2_PKCS11_TCTI`).
pub const TPM2_TCTI_ENV: &str = "CAIRN_TPM2_TCTI";

/// The environment of a child process: variable names and values.
pub type ChildEnv = Vec<(&'static str, OsString)>;

/// A module tests can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestModule {
    /// SoftHSM2.
    SoftHsm2,
    /// tpm2-pkcs11 on a software TPM.
    Tpm2,
}

impl TestModule {
    /// The module `CAIRN_TEST_PKCS11` names (unset: SoftHSM2).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(TEST_MODULE_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Self::SoftHsm2),
            Ok(v) if v.is_empty() || v == "softhsm2" => Ok(Self::SoftHsm2),
            Ok(v) if v == "tpm2" => Ok(Self::Tpm2),
            Ok(v) => Err(format!(
                "{TEST_MODULE_ENV}={v:?}: expected \"softhsm2\" or \"tpm2\""
            )),
            Err(e) => Err(format!("{TEST_MODULE_ENV}: {e}")),
        }
    }

    /// Its name, as `CAIRN_TEST_PKCS11` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SoftHsm2 => "softhsm2",
            Self::Tpm2 => "tpm2",
        }
    }

    /// Prepares a fresh, empty token store under `dir` (created) and returns the environment a
    /// child process needs to load this module on it, `CAIRN_PKCS11_MODULE` included.
    pub fn child_env(self, dir: &Path) -> Result<ChildEnv, String> {
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        match self {
            Self::SoftHsm2 => {
                let tokens = dir.join("tokens");
                std::fs::create_dir_all(&tokens).map_err(|e| io("creating", e))?;
                let conf = dir.join("softhsm2.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                        tokens.display()
                    ),
                )
                .map_err(|e| io("writing softhsm2.conf in", e))?;
                Ok(vec![
                    (MODULE_ENV, SOFTHSM_MODULE.into()),
                    ("SOFTHSM2_CONF", conf.into_os_string()),
                ])
            }
            Self::Tpm2 => {
                let tcti = std::env::var_os(TPM2_TCTI_ENV).ok_or_else(|| {
                    format!(
                        "{TEST_MODULE_ENV}=tpm2 needs the software TPM: run the command under \
                         tools/with-tpm2 ({TPM2_TCTI_ENV} is not set)"
                    )
                })?;
                let store = dir.join("tpm2-store");
                std::fs::create_dir_all(&store).map_err(|e| io("creating", e))?;
                Ok(vec![
                    (MODULE_ENV, TPM2_MODULE.into()),
                    ("TPM2_PKCS11_STORE", store.into_os_string()),
                    ("TPM2_PKCS11_TCTI", tcti),
                    // tpm2-pkcs11 logs warnings on stderr; errors still show.
                    ("TPM2_PKCS11_LOG_LEVEL", "0".into()),
                    ("TSS2_LOG", "all+NONE".into()),
                ])
            }
        }
    }
}

/// [`TestModule::from_env`] and [`TestModule::child_env`] in one: the module and the environment
/// of a child on a fresh store under `dir`.
pub fn child_env(dir: &Path) -> Result<(TestModule, ChildEnv), String> {
    let module = TestModule::from_env()?;
    Ok((module, module.child_env(dir)?))
}

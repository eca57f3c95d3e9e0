//! Where custodians' passphrases come from: prompted without echo on the terminal, or read one per
//! line from a file descriptor (`--passphrase-fd N`) for automation. They are never taken as
//! arguments or from the environment, where shell histories and process listings keep them.

use std::io::{BufRead, BufReader, Read as _};

use anyhow::{Context, anyhow, bail};
use cairn_signer::shares::Passphrase;
use clap::Args;

/// Where passphrases come from.
#[derive(Debug, Args)]
pub(crate) struct Secrets {
    /// Read passphrases one per line from this file descriptor (0 for standard input) instead of
    /// prompting on the terminal.
    #[arg(long, value_name = "FD")]
    passphrase_fd: Option<u32>,
}

/// Reads passphrases in order, from the descriptor or the terminal.
pub(crate) struct PassphraseSource {
    reader: Option<Box<dyn BufRead>>,
}

impl PassphraseSource {
    pub(crate) fn new(secrets: &Secrets) -> anyhow::Result<Self> {
        let reader: Option<Box<dyn BufRead>> = match secrets.passphrase_fd {
            None => None,
            Some(0) => Some(Box::new(BufReader::new(std::io::stdin()))),
            Some(fd) => {
                let path = format!("/dev/fd/{fd}");
                let f = std::fs::File::open(&path)
                    .with_context(|| format!("opening passphrase descriptor {fd}"))?;
                Some(Box::new(BufReader::new(f)))
            }
        };
        Ok(Self { reader })
    }

    /// The next passphrase, for `whom`; `confirm` asks twice on a terminal.
    pub(crate) fn next(&mut self, whom: &str, confirm: bool) -> anyhow::Result<Passphrase> {
        if let Some(r) = self.reader.as_mut() {
            return read_passphrase_line(r)?.ok_or_else(|| {
                anyhow!("the passphrase descriptor ended before the passphrase for {whom}")
            });
        }
        let first = Passphrase::new(
            rpassword::prompt_password(format!("Passphrase for {whom}: ")).context(
                "reading a passphrase from the terminal (use --passphrase-fd without one)",
            )?,
        );
        if confirm {
            let again = Passphrase::new(
                rpassword::prompt_password(format!("Passphrase for {whom} (again): "))
                    .context("reading a passphrase from the terminal")?,
            );
            if !first.same_as(&again) {
                bail!("the two passphrases for {whom} differ");
            }
        }
        Ok(first)
    }
}

/// Reads one line of at most 4 KiB from `r` as a passphrase (for `--passphrase-fd`); `None` at the
/// end of the input.
fn read_passphrase_line(r: &mut impl BufRead) -> anyhow::Result<Option<Passphrase>> {
    // Room for the whole line up front: a reallocation would leave a copy behind.
    let mut line = zeroize::Zeroizing::new(String::with_capacity(4097));
    let n = r
        .by_ref()
        .take(4096)
        .read_line(&mut line)
        .context("reading a passphrase from the passphrase descriptor")?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Passphrase::new(std::mem::take(&mut *line))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_yields_one_passphrase_per_line_then_none() {
        let mut r = std::io::Cursor::new("first passphrase\nsecond passphrase\n");
        let first = read_passphrase_line(&mut r).unwrap().unwrap();
        assert!(first.same_as(&Passphrase::new("first passphrase".into())));
        let second = read_passphrase_line(&mut r).unwrap().unwrap();
        assert!(second.same_as(&Passphrase::new("second passphrase".into())));
        assert!(read_passphrase_line(&mut r).unwrap().is_none());
    }

    #[test]
    fn a_line_longer_than_4_kib_is_cut_there() {
        let long = "x".repeat(5000);
        let mut r = std::io::Cursor::new(long.clone());
        let cut = read_passphrase_line(&mut r).unwrap().unwrap();
        assert!(cut.same_as(&Passphrase::new(long[..4096].to_owned())));
    }
}

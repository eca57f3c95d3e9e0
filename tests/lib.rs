//! cairn's end-to-end suites live in `tests/tests/`: each puts several crates together the way they
//! are deployed (vault to device, signer to relay, ...). This library is empty on purpose.

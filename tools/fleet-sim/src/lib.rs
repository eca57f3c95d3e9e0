#![doc = include_str!("../README.md")]

pub mod capture;
pub mod certs;
pub mod device;
pub mod error;
pub mod faults;
pub mod fleet;
pub mod jobs;
pub mod sim;
pub mod state;

pub use capture::Capture;
pub use device::{Images, MAX_WITNESSES, Trust, Witnesses, load_images};
pub use error::{Error, Result};
pub use faults::{DeviceFaults, Faults, Rate};
pub use jobs::Mode;
pub use sim::{Sim, SimConfig, SimDevice, Stats};

//! The suite's cases, one module per area of the contract.

pub mod background;
pub mod concurrency;
pub mod contract;
pub mod copy;
pub mod io;
pub mod isolation;
pub mod lifecycle;
pub mod limits;
pub mod mounts;
pub mod network;
pub mod paths;
pub mod process;
pub mod sandbox;

//! The profiling modes besides the default figures: `--breakdown`,
//! `--breakdown docker`, `--cpu`.

pub mod breakdown;
pub mod cpu;
pub mod docker_breakdown;

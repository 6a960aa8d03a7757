//! Where the network runs: the CPU, or an NVIDIA GPU through candle's CUDA backend
//! (cudarc) in a build with the `cuda` feature (`make build-gpu`). Asking for a GPU
//! that cannot be had is an error at start, with what to do about it.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

/// `--device`: `cpu`, `cuda` (GPU 0) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (every build).
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{other}` is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl DeviceChoice {
    /// True for a GPU.
    pub fn is_cuda(self) -> bool {
        matches!(self, Self::Cuda(_))
    }

    /// The candle device, or why it cannot be had.
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    // cudarc panics on some driver failures instead of returning them: either way, a
    // clear error now rather than a panic on the first task.
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(error)) => {
            anyhow::bail!(
                "CUDA device {ordinal} is not available ({error}); is there an NVIDIA GPU and driver?"
            )
        }
        Err(_) => anyhow::bail!("CUDA device {ordinal} could not be opened: the CUDA driver failed to start"),
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> anyhow::Result<Device> {
    anyhow::bail!(
        "--device cuda:{ordinal} needs a GPU build of the worker: this one was built without the `cuda` \
         feature (build it with `make build-gpu`), or use --device cpu"
    )
}

/// `--dtype`: the precision of the weights and activations on candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (reference accuracy).
    #[default]
    F32,
    /// 16-bit floats: about twice the throughput on a GPU, cosine ≥ 0.99 to f32.
    F16,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_alike() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert_eq!(DeviceChoice::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cpu_always_opens() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_cpu_build_is_a_clear_error() {
        let error = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(error.contains("make build-gpu") && error.contains("--device cpu"), "{error}");
    }
}

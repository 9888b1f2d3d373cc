//! Checkpoints in the safetensors format, with PyTorch-style names, so that PyTorch's
//! `safetensors.torch.load_file` reads them and wgrad reads files written from PyTorch.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::host::HostBuffer;
use crate::nn::Module;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::path::Path;

struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_bytes(t: &Tensor) -> Result<Bytes> {
    let cpu = t.to_device(&Device::Cpu)?;
    let (dtype, data) = match t.dtype() {
        DType::F32 => (
            Dtype::F32,
            cpu.to_vec::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::I64 => (
            Dtype::I64,
            cpu.to_vec::<i64>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::Bool => (
            Dtype::BOOL,
            cpu.to_vec::<bool>()?.iter().map(|&b| b as u8).collect(),
        ),
    };
    Ok(Bytes {
        dtype,
        shape: t.shape().to_vec(),
        data,
    })
}

/// Write named tensors to a safetensors file.
pub fn save(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let io_err = |msg: String| Error::Io {
        op: "save",
        msg: format!("{}: {msg}", path.display()),
    };
    // Names the format cannot hold: a repeated one, and the header's own key.
    let mut seen = std::collections::HashSet::new();
    for (n, _) in tensors {
        if n == "__metadata__" {
            return Err(io_err(format!(
                "{n:?} is reserved by the safetensors format"
            )));
        }
        if !seen.insert(n.as_str()) {
            return Err(io_err(format!("the name {n:?} is given twice")));
        }
    }
    let bytes: Vec<(String, Bytes)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), to_bytes(t)?)))
        .collect::<Result<_>>()?;
    // Written beside the target, then renamed over it: a crash mid-save leaves the previous
    // file whole.
    let name = path
        .file_name()
        .ok_or_else(|| io_err("not a file path".into()))?
        .to_string_lossy()
        .into_owned();
    let partial = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let written = safetensors::tensor::serialize_to_file(
        bytes.iter().map(|(n, b)| (n.as_str(), b)),
        &None,
        &partial,
    )
    .map_err(|e| io_err(e.to_string()))
    .and_then(|()| std::fs::rename(&partial, path).map_err(|e| io_err(e.to_string())));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Read every tensor of a safetensors file (F32, F64 as F32, I64, I32 as I64, BOOL), on the
/// CPU. A truncated or corrupt file is an error.
pub fn load(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        op: "load",
        msg: format!("{}: {e}", path.display()),
    })?;
    load_bytes(&bytes, &path.display().to_string())
}

/// [`load`] from the bytes of a safetensors file (`source` names it in errors).
pub fn load_bytes(bytes: &[u8], source: &str) -> Result<Vec<(String, Tensor)>> {
    let err = |msg: String| Error::Io {
        op: "load",
        msg: format!("{source}: {msg}"),
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| err(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let shape = view.shape().to_vec();
        let storage = match view.dtype() {
            Dtype::F32 => HostBuffer::F32(
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::F64 => HostBuffer::F32(
                d.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
            ),
            Dtype::I64 => HostBuffer::I64(
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            Dtype::I32 => HostBuffer::I64(
                d.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                    .collect(),
            ),
            Dtype::BOOL => HostBuffer::Bool(d.iter().map(|&b| b != 0).collect()),
            other => {
                return Err(err(format!(
                    "tensor {name:?} has unsupported dtype {other:?}"
                )))
            }
        };
        out.push((
            name,
            Tensor::from_storage(crate::storage::Storage::Cpu(storage), &shape),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Save a module's parameters and buffers under their PyTorch-style names.
pub fn save_module(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    save(path, &module.state())
}

/// Copy the tensors named like the module's state into it. Every name, shape and dtype is
/// checked before anything is written, so on an error the module is unchanged.
pub fn load_into(
    state: &[(String, Tensor)],
    tensors: &[(String, Tensor)],
    op: &'static str,
) -> Result<()> {
    let mut plan = Vec::with_capacity(state.len());
    for (name, dst) in state {
        let src = tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::invalid(op, format!("missing tensor {name:?}")))?;
        if src.shape() != dst.shape() || src.dtype() != dst.dtype() {
            return Err(Error::shapes(
                op,
                dst.shape(),
                src.shape(),
                format!(
                    "tensor {name:?}: expected {:?} {:?}, file has {:?} {:?}",
                    dst.dtype(),
                    dst.shape(),
                    src.dtype(),
                    src.shape()
                ),
            ));
        }
        plan.push((dst, src.to_device(dst.device())?));
    }
    if let Some((extra, _)) = tensors
        .iter()
        .find(|(n, _)| !state.iter().any(|(m, _)| m == n))
    {
        return Err(Error::invalid(
            op,
            format!("unexpected tensor {extra:?} in the file"),
        ));
    }
    let _g = crate::no_grad();
    for (dst, src) in plan {
        dst.copy_(&src)?;
    }
    Ok(())
}

/// Load a checkpoint written by [`save_module`] (or by PyTorch with the same names).
pub fn load_module(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let tensors = load(path)?;
    load_into(&module.state(), &tensors, "load_module")
}

//! Checkpoints in the safetensors format, with PyTorch-style names, so that PyTorch's
//! `safetensors.torch.load_file` reads them and wgrad reads files written from PyTorch.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::host::HostBuffer;
use crate::nn::Module;
use crate::optim::{LrScheduler, Optimizer};
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
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
        DType::F64 => (
            Dtype::F64,
            cpu.to_vec::<f64>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            Dtype::F16,
            cpu.to_vec::<half::f16>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::BF16 => (
            Dtype::BF16,
            cpu.to_vec::<half::bf16>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
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
    write_file(path.as_ref(), tensors, None)
}

/// [`save`] with the header's string metadata (what a checkpoint keeps beside its tensors).
fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(io_err(format!(
                "cannot write: the folder {} does not exist",
                dir.display()
            )));
        }
    }
    let partial = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let written = safetensors::tensor::serialize_to_file(
        bytes.iter().map(|(n, b)| (n.as_str(), b)),
        &metadata,
        &partial,
    )
    .map_err(|e| match e {
        // The OS's reason ("Permission denied", "No space left on device"), not its Debug form.
        safetensors::SafeTensorError::IoError(e) => io_err(format!("cannot write: {e}")),
        e => io_err(e.to_string()),
    })
    .and_then(|()| std::fs::rename(&partial, path).map_err(|e| io_err(e.to_string())));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Read every tensor of a safetensors file (F32, F64 as F32, I64, I32 as I64, BOOL), on the
/// CPU. A truncated or corrupt file is an error.
pub fn load(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    Ok(read_file(path.as_ref())?.0)
}

/// Named tensors, as a file holds them.
type Named = Vec<(String, Tensor)>;

/// The tensors of a safetensors file and its header's metadata.
fn read_file(path: &Path) -> Result<(Named, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        op: "load",
        msg: format!("{}: cannot read: {e}", path.display()),
    })?;
    let source = path.display().to_string();
    let tensors = load_bytes(&bytes, &source)?;
    // load_bytes has parsed the header already, so this cannot fail on its own.
    let metadata = SafeTensors::read_metadata(&bytes)
        .map(|(_, m)| m.metadata().clone().unwrap_or_default())
        .map_err(|e| Error::Io {
            op: "load",
            msg: format!("{source}: {e}"),
        })?;
    Ok((tensors, metadata))
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
            Dtype::F64 => HostBuffer::F64(
                d.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
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
            Dtype::F16 => HostBuffer::F16(
                d.chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            Dtype::BF16 => HostBuffer::BF16(
                d.chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
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

/// Save a module's parameters and buffers under their PyTorch-style names (the file
/// `safetensors.torch.load_file` reads as a `state_dict`).
pub fn save_module(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    save(path, &module.state())
}

/// What a non-strict load left out: names the module has that the file lacks, and names
/// the file has that the module lacks (PyTorch's `missing_keys`, `unexpected_keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The module's tensors that kept their values.
    pub missing: Vec<String>,
    /// The file's tensors that were not used.
    pub unexpected: Vec<String>,
}

/// Load a module's state from a file written by [`save_module`], by [`save_checkpoint`]
/// (its model part), or by PyTorch with the same names. Strict, as PyTorch's default:
/// every name must match (see [`load_module_with`]).
pub fn load_module(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    load_module_with(module, path, true).map(drop)
}

/// [`load_module`] with PyTorch's `strict=`: when `false`, tensors missing from the file
/// keep their values and extra ones are skipped (both are reported); shapes must still match,
/// and dtypes too except that a float tensor converts to the module's float dtype. On an error
/// the module is unchanged.
pub fn load_module_with(
    module: &dyn Module,
    path: impl AsRef<Path>,
    strict: bool,
) -> Result<LoadReport> {
    let (tensors, metadata) = read_file(path.as_ref())?;
    let tensors = if metadata.get(FORMAT_KEY).map(String::as_str) == Some(CHECKPOINT_FORMAT) {
        part(&tensors, MODEL)
    } else {
        tensors
    };
    load_state(&module.state(), &tensors, strict, "load_module")
}

/// The header key and value that mark a checkpoint of [`save_checkpoint`].
const FORMAT_KEY: &str = "format";
const CHECKPOINT_FORMAT: &str = "wgrad-checkpoint";
const MODEL: &str = "model.";
const OPTIMIZER: &str = "optimizer.";

/// The tensors under `prefix`, without it.
fn part(tensors: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .filter_map(|(n, t)| Some((n.strip_prefix(prefix)?.to_string(), t.clone())))
        .collect()
}

/// Save everything a run needs to resume exactly, in one safetensors file: the model's
/// state under `model.` (PyTorch reads it with `load_file` and that prefix stripped), the
/// optimizer's per-parameter state and step counts under `optimizer.`, and in the header
/// the learning rate, the scheduler's position and the default generator's position (so
/// that dropout draws the same masks after a resume).
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    scheduler: Option<&dyn LrScheduler>,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = model
        .state()
        .into_iter()
        .map(|(n, t)| (format!("{MODEL}{n}"), t))
        .collect();
    tensors.extend(
        optimizer
            .state()
            .into_iter()
            .map(|(n, t)| (format!("{OPTIMIZER}{n}"), t)),
    );
    let mut meta = HashMap::new();
    meta.insert(FORMAT_KEY.to_string(), CHECKPOINT_FORMAT.to_string());
    // Rust prints an f64 so that parsing it gives the same bits back.
    meta.insert("optimizer.lr".into(), optimizer.lr().to_string());
    if let Some(s) = scheduler {
        let st = s.state();
        meta.insert("scheduler.epoch".into(), st.epoch.to_string());
        meta.insert("scheduler.base_lr".into(), st.base_lr.to_string());
    }
    let (seed, offset) = crate::rng::with_default(|g| (g.seed(), g.offset()));
    meta.insert("generator.seed".into(), seed.to_string());
    meta.insert("generator.offset".into(), offset.to_string());
    write_file(path.as_ref(), &tensors, Some(meta))
}

/// Resume from a file of [`save_checkpoint`]: the model (strictly), the optimizer's state
/// and learning rate, the scheduler's position when one is given, and the default
/// generator's position. Everything is checked before the model changes.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &mut dyn Optimizer,
    scheduler: Option<&mut dyn LrScheduler>,
) -> Result<()> {
    const OP: &str = "load_checkpoint";
    let path = path.as_ref();
    let (tensors, meta) = read_file(path)?;
    let bad = |msg: String| Error::Io {
        op: OP,
        msg: format!("{}: {msg}", path.display()),
    };
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(bad("not a checkpoint of save_checkpoint (no format entry in its header); load a model's state with load_module".into()));
    }
    let number = |key: &str| -> Result<&str> {
        meta.get(key)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("the header has no {key:?}")))
    };
    let parse_f64 = |key: &str| -> Result<f64> {
        number(key)?
            .parse()
            .map_err(|_| bad(format!("{key:?} is not a number")))
    };
    let parse_u64 = |key: &str| -> Result<u64> {
        number(key)?
            .parse()
            .map_err(|_| bad(format!("{key:?} is not a count")))
    };
    let lr = parse_f64("optimizer.lr")?;
    let schedule = match &scheduler {
        Some(_) => Some(crate::optim::SchedulerState {
            epoch: parse_u64("scheduler.epoch")? as usize,
            base_lr: parse_f64("scheduler.base_lr")?,
        }),
        None => None,
    };
    let generator = (parse_u64("generator.seed")?, parse_u64("generator.offset")?);
    // The optimizer checks its state before taking it; the model is written last.
    let state = model.state();
    let plan = plan_load(&state, &part(&tensors, MODEL), true, OP)?;
    optimizer.load_state(&part(&tensors, OPTIMIZER))?;
    optimizer.set_lr(lr);
    if let (Some(s), Some(st)) = (scheduler, schedule) {
        s.load_state(st);
    }
    crate::rng::with_default(|g| *g = crate::rng::Generator::at(generator.0, generator.1));
    write_plan(plan.0)
}

/// Copy the tensors named like the module's state into it. Every name, shape and dtype is
/// checked before anything is written, so on an error the module is unchanged.
pub fn load_into(
    state: &[(String, Tensor)],
    tensors: &[(String, Tensor)],
    op: &'static str,
) -> Result<()> {
    load_state(state, tensors, true, op).map(drop)
}

fn load_state(
    state: &[(String, Tensor)],
    tensors: &[(String, Tensor)],
    strict: bool,
    op: &'static str,
) -> Result<LoadReport> {
    let (plan, report) = plan_load(state, tensors, strict, op)?;
    write_plan(plan)?;
    Ok(report)
}

/// The (destination, source) pairs of a load, every name, shape and dtype checked.
type Plan<'a> = Vec<(&'a Tensor, Tensor)>;

fn plan_load<'a>(
    state: &'a [(String, Tensor)],
    tensors: &[(String, Tensor)],
    strict: bool,
    op: &'static str,
) -> Result<(Plan<'a>, LoadReport)> {
    let mut plan = Vec::with_capacity(state.len());
    let mut report = LoadReport::default();
    for (name, dst) in state {
        let Some(src) = tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t) else {
            if strict {
                return Err(Error::invalid(
                    op,
                    format!("missing tensor {name:?} (load with strict = false to keep its value)"),
                ));
            }
            report.missing.push(name.clone());
            continue;
        };
        // A float tensor converts to the module's float dtype (an f32 file loads into a
        // bf16 model, as PyTorch's `copy_` does); other dtypes must match.
        let converts = src.dtype().is_float() && dst.dtype().is_float();
        if src.shape() != dst.shape() || (src.dtype() != dst.dtype() && !converts) {
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
        plan.push((dst, src.to_device(dst.device())?.to_dtype(dst.dtype())?));
    }
    for (extra, _) in tensors
        .iter()
        .filter(|(n, _)| !state.iter().any(|(m, _)| m == n))
    {
        if strict {
            return Err(Error::invalid(
                op,
                format!(
                    "unexpected tensor {extra:?} in the file (load with strict = false to skip it)"
                ),
            ));
        }
        report.unexpected.push(extra.clone());
    }
    Ok((plan, report))
}

fn write_plan(plan: Plan<'_>) -> Result<()> {
    let _g = crate::no_grad();
    for (dst, src) in plan {
        dst.copy_(&src)?;
    }
    Ok(())
}

//! Lazy elementwise fusion on a GPU. An elementwise op (unary, binary, comparison, where,
//! cast) over f32 and bool tensors of one GPU does not dispatch a kernel: its result is a
//! storage cell holding the expression that computes it, a DAG over the tensors it reads
//! (each with its view: strides, broadcasts, offsets) and numbers. An op on such a result
//! extends the DAG. The value is computed, by one generated kernel (`gpu/kernels/lazy.rs`),
//! when something needs its data: a readback, a non-elementwise op, a write, an op that
//! reads it through a view, `Device::flush`, a capture's start and end, or a size bound.
//!
//! That kernel stores the value asked for and every other value of the DAG that a pending
//! tensor still stands for (autograd keeps many); values nothing holds any more are never
//! written to memory. A small pending value read broadcast is computed again where it is
//! read. A reduction of a pending f32 value that only the reduced tensor holds ([`reduce`])
//! computes it as it reads it (a prologue), without storing it: `sum((x - y)^2)` is one
//! kernel. A value asked for later is computed from the tensors the DAG reads, which cannot
//! have changed: a write to a tensor that a pending expression reads first computes every
//! pending expression ([`settle_all`]).
//!
//! What stays eager: integer, 16-bit and F64 math, empty tensors, tensors the application
//! lent (`Tensor::from_wgpu_buffer`: it may write them between ops), and everything when
//! `WGRAD_NO_FUSION=1`. An error found while computing a pending value (out of memory, a
//! lost device) is the error of every tensor that reads it, from then on.

use super::{fused::fusion_disabled, Storage, StorageCell};
use crate::dtype::{DType, Scalar};
use crate::error::Result;
use crate::gpu::kernels::lazy::{fusable_dtype, supports, FusedOp, LazyProgram, Node};
use crate::gpu::lazy::FusedRead;
use crate::gpu::{GpuContext, MatmulPlan};
use crate::layout::Layout;
use crate::op::{Reduce, ReduceOp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// Ops in one expression at most (shared ones counted once per use): bounds a kernel's
/// size and the work of planning it.
const MAX_NODES: usize = 48;
/// Tensor views one kernel reads at most (fewer where the adapter binds fewer than ten
/// storage buffers: WebGPU promises eight).
const MAX_READS: usize = 8;
/// Storage bindings of a fused kernel at most (parameters, outputs, reads), within the
/// adapter's limit.
const MAX_BINDINGS: usize = 16;
/// Ops of a pending value at most that an op reading it broadcast computes again for every
/// element it reads it at, rather than store it.
const MAX_BROADCAST: usize = 16;

/// A value of an expression.
pub(crate) struct Expr {
    kind: Kind,
    dtype: DType,
    /// Ops below and including this one, shared ones counted once per use.
    size: usize,
    /// The pending cell that stands for this value, if one does.
    cell: OnceLock<Weak<StorageCell>>,
    /// The matrix product this value is computed from, if any: at most one per expression,
    /// read whole (the expression's element `i` is the product's), whose kernel computes
    /// the expression as it stores the product (an epilogue).
    product: Option<Arc<Product>>,
}

enum Kind {
    /// A tensor's elements through its view (a cell whose data is computed).
    Read(Arc<StorageCell>, Layout),
    Scalar(Scalar),
    Op(FusedOp, Vec<Arc<Expr>>),
    /// The element of a matrix product at the same index.
    Product(Arc<Product>),
}

/// A lazily computed f32 matrix product: its operands (computed cells, through their
/// views) and its kernel's plan, made when it was asked for so that a bad size is an `Err`
/// of the op (the eager product reports it).
pub(crate) struct Product {
    a: (Arc<StorageCell>, Layout),
    b: (Arc<StorageCell>, Layout),
    plan: MatmulPlan,
    /// The pending cell of the product itself.
    cell: OnceLock<Weak<StorageCell>>,
}

/// The expression a pending cell will compute, over `shape`, on `ctx`.
pub(crate) struct Pending {
    expr: Arc<Expr>,
    shape: Vec<usize>,
    ctx: Arc<GpuContext>,
}

/// A cell's pending expression, if it has one: `flag` says so without a lock.
#[derive(Default)]
pub(crate) struct Slot {
    flag: AtomicBool,
    pending: Mutex<Option<Pending>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot {{ pending: {} }}", self.is_pending())
    }
}

impl Slot {
    fn with(p: Pending) -> Slot {
        Slot {
            flag: AtomicBool::new(true),
            pending: Mutex::new(Some(p)),
        }
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Option<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An operand of an elementwise op, for [`try_build`].
pub(crate) enum Input<'a> {
    Tensor(&'a Arc<StorageCell>, &'a Layout, DType),
    Scalar(Scalar),
}

/// Pending cells, to compute them all when a tensor they read is written.
struct Registry {
    cells: Vec<Weak<StorageCell>>,
    prune_at: usize,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Mutex::new(Registry {
            cells: Vec::new(),
            prune_at: 256,
        })
    })
}

/// Entries in the registry (a lock-free test for the common case of none).
static REGISTERED: AtomicUsize = AtomicUsize::new(0);

fn register(cell: &Arc<StorageCell>) {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    r.cells.push(Arc::downgrade(cell));
    if r.cells.len() >= r.prune_at {
        r.cells
            .retain(|w| w.upgrade().is_some_and(|c| c.lazy.is_pending()));
        r.prune_at = (2 * r.cells.len()).max(256);
    }
    REGISTERED.store(r.cells.len(), Ordering::Release);
}

/// Compute every pending value (before a write to a tensor one of them reads, a capture, a
/// flush). Every value pending when this is called is computed when it returns: by this
/// thread, or by another one that was computing it already (whose slot lock it waits on).
pub(crate) fn settle_all() {
    if REGISTERED.load(Ordering::Acquire) == 0 {
        return;
    }
    let cells: Vec<Weak<StorageCell>> = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .cells
        .clone();
    // Newest first: a later expression usually extends an earlier one, and its kernel
    // stores the earlier value too.
    for cell in cells.iter().rev().filter_map(Weak::upgrade) {
        cell.settle();
    }
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    r.cells
        .retain(|w| w.upgrade().is_some_and(|c| c.lazy.is_pending()));
    REGISTERED.store(r.cells.len(), Ordering::Release);
}

/// The GPU that computes the cell's data, if the op can read it in a fused kernel: a
/// pending value, or a computed GPU buffer of wgrad's own.
fn fusable_device(cell: &StorageCell) -> Option<Arc<GpuContext>> {
    if cell.lazy.is_pending() {
        if let Some(p) = cell.lazy.lock().as_ref() {
            return Some(p.ctx.clone());
        }
    }
    match &*cell.read() {
        Storage::Gpu(g) if !g.buf.is_external() => Some(g.ctx().clone()),
        Storage::Gpu(_) | Storage::Cpu(_) | Storage::Failed(_) => None,
    }
}

/// An op's operand in an expression, with the cell and view it was inlined from (when it
/// was a pending value read whole).
type Operand<'a> = (Arc<Expr>, Option<(&'a Arc<StorageCell>, &'a Layout)>);

/// Another pending cell a kernel stores: its node, and its slot, locked.
type AlsoStored<'a> = (u16, &'a Arc<StorageCell>, MutexGuard<'a, Option<Pending>>);

/// The product of `a` (viewed as `la`) and `b` (as `lb`), f32 on one GPU, as a pending
/// cell: its matmul kernel also computes the elementwise ops that read it whole (a bias, an
/// activation, a gradient's mask), as it stores it. `None` where the product runs now, as
/// ever (other dtypes and kernels, lent buffers, empty products, bad sizes).
pub(crate) fn try_product(
    a: &Arc<StorageCell>,
    la: &Layout,
    b: &Arc<StorageCell>,
    lb: &Layout,
) -> Option<Arc<StorageCell>> {
    if fusion_disabled() || crate::capture::paused() || a.failed() || b.failed() {
        return None;
    }
    let (plan, ctx) = super::with_reads([Some(a), Some(b)], |[sa, sb]| match (sa, sb) {
        (Some(Storage::Gpu(ga)), Some(Storage::Gpu(gb)))
            if !ga.buf.is_external()
                && !gb.buf.is_external()
                && Arc::ptr_eq(ga.ctx(), gb.ctx()) =>
        {
            let plan = ga.fusable_product(la, gb, lb)?;
            Some((plan, ga.ctx().clone()))
        }
        _ => None,
    })?;
    for c in [a, b] {
        c.read_lazily.store(true, Ordering::Release);
    }
    let r = la.rank();
    let mut shape = la.shape[..r - 1].to_vec();
    shape.push(lb.shape[r - 1]);
    let product = Arc::new(Product {
        a: (a.clone(), la.clone()),
        b: (b.clone(), lb.clone()),
        plan,
        cell: OnceLock::new(),
    });
    let expr = Arc::new(Expr {
        kind: Kind::Product(product.clone()),
        dtype: DType::F32,
        size: 0,
        cell: OnceLock::new(),
        product: Some(product.clone()),
    });
    let cell = pending(expr, &shape, ctx);
    let _ = product.cell.set(Arc::downgrade(&cell));
    Some(cell)
}

/// The result of `op` over `inputs` (broadcast to `shape`, the value operands of dtype
/// `input`), of dtype `out`, as a pending cell; `None` where the op does not fuse (then it
/// runs now, as ever).
pub(crate) fn try_build(
    op: FusedOp,
    shape: &[usize],
    input: DType,
    out: DType,
    inputs: &[Input<'_>],
) -> Option<Arc<StorageCell>> {
    // Work a capture must not record is done now: computed later, it would be recorded.
    if fusion_disabled() || crate::capture::paused() || !supports(op, input, out) {
        return None;
    }
    let n: usize = shape.iter().product();
    if n == 0 || u32::try_from(n).is_err() {
        return None;
    }
    let mut ctx: Option<Arc<GpuContext>> = None;
    for i in inputs {
        if let Input::Tensor(cell, _, dtype) = i {
            if cell.failed() || !fusable_dtype(*dtype) {
                return None;
            }
            let c = fusable_device(cell)?;
            match &ctx {
                Some(first) if !Arc::ptr_eq(first, &c) => return None,
                _ => ctx = Some(c),
            }
        }
    }
    let ctx = ctx?;
    // A result the device cannot bind stays eager, so that its error comes from the op
    // that asked for it, not from a later read (every fusable element is 4 bytes).
    if (n as u64).saturating_mul(4) > ctx.max_binding() {
        return None;
    }
    let limit = ctx.limits.max_storage_buffers_per_shader_stage as usize;
    let max_reads = MAX_READS.min(limit.saturating_sub(2));
    // Each operand: the pending expression of a cell of this shape read whole and in order
    // (inlined), or a read of a computed cell through its view.
    let mut operands: Vec<Operand<'_>> = inputs
        .iter()
        .map(|i| match *i {
            Input::Tensor(cell, layout, dtype) => match pending_expr(cell) {
                Some((e, from))
                    if from == shape && layout.is_contiguous() && layout.offset == 0 =>
                {
                    (e, Some((cell, layout)))
                }
                // Read whole through another shape (a linear layer's product of
                // [batch * seq, n] as [batch, seq, n]): the same values in the same order.
                Some((e, from))
                    if layout.is_contiguous()
                        && layout.offset == 0
                        && layout.numel() == from.iter().product::<usize>() =>
                {
                    match reshaped(&e, &from, shape, &mut HashMap::new()) {
                        Some(e) => (e, Some((cell, layout))),
                        None => (read(cell, layout, dtype), None),
                    }
                }
                // A small value broadcast (a row's mean, say) is computed where it is read
                // (not a product's: its kernel computes each element once).
                Some((e, from)) if e.size <= MAX_BROADCAST && broadcasts(layout, &from) => {
                    match broadcast(&e, &from, shape, &mut HashMap::new()) {
                        Some(e) => (e, Some((cell, layout))),
                        None => (read(cell, layout, dtype), None),
                    }
                }
                _ => (read(cell, layout, dtype), None),
            },
            Input::Scalar(v) => (leaf(Kind::Scalar(v), input), None),
        })
        .collect();
    // One kernel computes one product: the operands computed from another product read it
    // computed.
    let mut first_product: Option<Arc<Product>> = None;
    for operand in operands.iter_mut() {
        let Some(p) = operand.0.product.clone() else {
            continue;
        };
        match &first_product {
            None => first_product = Some(p),
            Some(q) if Arc::ptr_eq(q, &p) => {}
            Some(_) => {
                let (cell, layout) = operand.1?;
                *operand = (read(cell, layout, operand.0.dtype), None);
            }
        }
    }
    // Within the bounds: the largest inlined operand becomes a read of its computed value
    // until the expression fits (a single op over reads always does).
    loop {
        let size = 1 + operands.iter().map(|(e, _)| e.size).sum::<usize>();
        let mut reads = Vec::new();
        for (e, _) in &operands {
            collect_reads(e, &mut reads);
        }
        if size <= MAX_NODES && reads.len() <= max_reads {
            break;
        }
        let largest = operands
            .iter()
            .enumerate()
            .filter(|(_, (_, inlined))| inlined.is_some())
            .max_by_key(|(_, (e, _))| e.size)
            .map(|(k, _)| k)?;
        let (e, inlined) = &operands[largest];
        let (cell, layout) = (*inlined)?;
        operands[largest] = (read(cell, layout, e.dtype), None);
    }
    let size = 1 + operands.iter().map(|(e, _)| e.size).sum::<usize>();
    for (e, _) in &operands {
        if let Kind::Read(cell, _) = &e.kind {
            cell.read_lazily.store(true, Ordering::Release);
        }
    }
    let product = operands.iter().find_map(|(e, _)| e.product.clone());
    let expr = Arc::new(Expr {
        kind: Kind::Op(op, operands.into_iter().map(|(e, _)| e).collect()),
        dtype: out,
        size,
        cell: OnceLock::new(),
        product,
    });
    Some(pending(expr, shape, ctx))
}

/// A new pending cell computing `expr` over `shape`.
fn pending(expr: Arc<Expr>, shape: &[usize], ctx: Arc<GpuContext>) -> Arc<StorageCell> {
    let cell = Arc::new(StorageCell::pending(Slot::with(Pending {
        expr: expr.clone(),
        shape: shape.to_vec(),
        ctx,
    })));
    let _ = expr.cell.set(Arc::downgrade(&cell));
    register(&cell);
    cell
}

fn leaf(kind: Kind, dtype: DType) -> Arc<Expr> {
    Arc::new(Expr {
        kind,
        dtype,
        size: 0,
        cell: OnceLock::new(),
        product: None,
    })
}

/// A read of `cell` through `layout`, its value computed first if it is pending.
fn read(cell: &Arc<StorageCell>, layout: &Layout, dtype: DType) -> Arc<Expr> {
    cell.settle();
    leaf(Kind::Read(cell.clone(), layout.clone()), dtype)
}

/// The expression of a pending cell, and its shape.
fn pending_expr(cell: &StorageCell) -> Option<(Arc<Expr>, Vec<usize>)> {
    if !cell.lazy.is_pending() {
        return None;
    }
    cell.lazy
        .lock()
        .as_ref()
        .map(|p| (p.expr.clone(), p.shape.clone()))
}

/// Whether `l` views a contiguous value of shape `from` broadcast (NumPy's rules: leading
/// dims added, dims of 1 repeated) to its own shape.
fn broadcasts(l: &Layout, from: &[usize]) -> bool {
    let Some(lead) = l.rank().checked_sub(from.len()) else {
        return false;
    };
    let own = Layout::contiguous(from);
    l.offset == 0
        && (0..l.rank()).all(|d| match d.checked_sub(lead) {
            None => l.strides[d] == 0,
            Some(k) if from[k] == 1 => l.strides[d] == 0 || l.shape[d] == 1,
            Some(k) => from[k] == l.shape[d] && l.strides[d] == own.strides[k],
        })
}

/// `e`, a value of shape `from`, as the value of shape `to` it broadcasts to: the same
/// ops over its reads broadcast alike (a new DAG, standing for no cell); `None` for a
/// product's value.
fn broadcast(
    e: &Arc<Expr>,
    from: &[usize],
    to: &[usize],
    done: &mut HashMap<*const Expr, Arc<Expr>>,
) -> Option<Arc<Expr>> {
    if let Some(b) = done.get(&Arc::as_ptr(e)) {
        return Some(b.clone());
    }
    let lead = to.len() - from.len();
    let kind = match &e.kind {
        Kind::Read(cell, l) => {
            let strides = (0..to.len())
                .map(|d| match d.checked_sub(lead) {
                    Some(k) if from[k] != 1 => l.strides[k],
                    _ => 0,
                })
                .collect();
            let layout = Layout {
                shape: to.to_vec(),
                strides,
                offset: l.offset,
            };
            Kind::Read(cell.clone(), layout)
        }
        Kind::Scalar(v) => Kind::Scalar(*v),
        Kind::Op(op, args) => Kind::Op(
            *op,
            args.iter()
                .map(|a| broadcast(a, from, to, done))
                .collect::<Option<_>>()?,
        ),
        // A product's element is read once, where its kernel computes it.
        Kind::Product(_) => return None,
    };
    let b = Arc::new(Expr {
        kind,
        dtype: e.dtype,
        size: e.size,
        cell: OnceLock::new(),
        product: e.product.clone(),
    });
    done.insert(Arc::as_ptr(e), b.clone());
    Some(b)
}

/// `e`, a value of shape `from`, as the value of shape `to` (as many elements) that reads
/// it in order: the same ops over the same elements, where every tensor it reads is read
/// whole and in order (`None` otherwise). The new nodes stand for the cells the old ones
/// do: their values are the same numbers in the same order.
fn reshaped(
    e: &Arc<Expr>,
    from: &[usize],
    to: &[usize],
    done: &mut HashMap<*const Expr, Arc<Expr>>,
) -> Option<Arc<Expr>> {
    if let Some(r) = done.get(&Arc::as_ptr(e)) {
        return Some(r.clone());
    }
    let kind = match &e.kind {
        Kind::Read(cell, l) => {
            if !(l.offset == 0 && l.is_contiguous() && l.shape == from) {
                return None;
            }
            Kind::Read(cell.clone(), Layout::contiguous(to))
        }
        // Element i of a product does not depend on the shape it is read as.
        Kind::Scalar(_) | Kind::Product(_) => return Some(e.clone()),
        Kind::Op(op, args) => {
            let args = args
                .iter()
                .map(|a| reshaped(a, from, to, done))
                .collect::<Option<Vec<_>>>()?;
            Kind::Op(*op, args)
        }
    };
    let cell = OnceLock::new();
    if let Some(w) = e.cell.get() {
        let _ = cell.set(w.clone());
    }
    let r = Arc::new(Expr {
        kind,
        dtype: e.dtype,
        size: e.size,
        cell,
        product: e.product.clone(),
    });
    done.insert(Arc::as_ptr(e), r.clone());
    Some(r)
}

/// The distinct reads (cell and view) of an expression.
fn collect_reads<'a>(e: &'a Expr, out: &mut Vec<(*const StorageCell, &'a Layout)>) {
    match &e.kind {
        Kind::Read(cell, layout) => {
            let key = (Arc::as_ptr(cell), layout);
            if !out.contains(&key) {
                out.push(key);
            }
        }
        Kind::Scalar(_) => {}
        Kind::Op(_, args) => {
            for a in args {
                collect_reads(a, out);
            }
        }
        // The product's kernel binds its two operands.
        Kind::Product(p) => {
            for (cell, layout) in [&p.a, &p.b] {
                let key = (Arc::as_ptr(cell), layout);
                if !out.contains(&key) {
                    out.push(key);
                }
            }
        }
    }
}

/// Compute a pending cell's value (called by [`StorageCell::settle`] with its slot
/// locked): one kernel, which also stores the values of the expression that other pending
/// cells stand for.
pub(super) fn settle(cell: &StorageCell, slot: &mut Option<Pending>) {
    let Some(p) = slot.take() else {
        return;
    };
    let mut plan = Plan::over(&p.shape);
    let root = plan.node(&p.expr);
    // The other pending cells of the expression, each stored by this kernel if its slot is
    // free now (a cell being computed elsewhere is computed here too, not stored).
    let candidates: Vec<(u16, Arc<StorageCell>)> = plan
        .standing
        .iter()
        .filter_map(|(n, w)| w.upgrade().map(|c| (*n, c)))
        .filter(|(_, c)| !std::ptr::eq(Arc::as_ptr(c), cell))
        .collect();
    let limit = (p.ctx.limits.max_storage_buffers_per_shader_stage as usize).min(MAX_BINDINGS);
    let operands = if plan.product.is_some() { 2 } else { 0 };
    let room = limit.saturating_sub(1 + plan.reads.len() + operands);
    let mut also: Vec<AlsoStored<'_>> = Vec::new();
    for (n, c) in &candidates {
        if also.len() + 1 >= room {
            break;
        }
        if !c.lazy.is_pending() {
            continue;
        }
        if let Ok(guard) = c.lazy.pending.try_lock() {
            if guard.is_some() {
                also.push((*n, c, guard));
            }
        }
    }
    let mut outputs = vec![root];
    outputs.extend(also.iter().map(|(n, _, _)| *n));
    let result = plan.run(&p, outputs);
    match result {
        Ok(mut values) => {
            let first = values.remove(0);
            for ((_, c, mut guard), v) in also.into_iter().zip(values) {
                *c.data.write().unwrap_or_else(|e| e.into_inner()) = Storage::Gpu(v);
                c.lazy.flag.store(false, Ordering::Release);
                *guard = None;
            }
            *cell.data.write().unwrap_or_else(|e| e.into_inner()) = Storage::Gpu(first);
        }
        Err(e) => {
            cell.failed.store(true, Ordering::Release);
            *cell.data.write().unwrap_or_else(|e| e.into_inner()) = Storage::Failed(e);
        }
    }
    cell.lazy.flag.store(false, Ordering::Release);
}

/// Whether an op is a few instructions: moves, comparisons, arithmetic without roots or
/// transcendental functions.
fn cheap_op(op: &FusedOp) -> bool {
    use crate::op::{BinaryOp as B, UnaryOp as U};
    match op {
        FusedOp::Unary(u) => matches!(
            u,
            U::Neg | U::Abs | U::Relu | U::Square | U::Sign | U::LogicalNot
        ),
        FusedOp::Binary(b) => matches!(
            b,
            B::Add | B::Sub | B::Mul | B::Div | B::Maximum | B::Minimum | B::ClampMin | B::ClampMax
        ),
        FusedOp::Cmp(_) | FusedOp::Where | FusedOp::Cast => true,
    }
}

/// An expression laid out as a kernel's program.
#[derive(Default)]
struct Plan {
    nodes: Vec<(Node, DType)>,
    done: HashMap<*const Expr, u16>,
    reads: Vec<(Arc<StorageCell>, Layout)>,
    /// The node of each read.
    read_nodes: Vec<u16>,
    scalars: Vec<(Scalar, DType)>,
    /// Op nodes that a pending cell stands for.
    standing: Vec<(u16, Weak<StorageCell>)>,
    /// The product whose kernel runs the program (its `Node::Product`), if any.
    product: Option<Arc<Product>>,
    /// The shape the program runs over.
    shape: Vec<usize>,
}

impl Plan {
    /// An empty plan of a program over `shape`.
    fn over(shape: &[usize]) -> Plan {
        Plan {
            shape: shape.to_vec(),
            ..Plan::default()
        }
    }

    fn node(&mut self, e: &Arc<Expr>) -> u16 {
        if let Some(&n) = self.done.get(&Arc::as_ptr(e)) {
            return n;
        }
        let node = match &e.kind {
            Kind::Read(cell, layout) => {
                let n = self.read(cell, layout, e.dtype);
                self.done.insert(Arc::as_ptr(e), n);
                return n;
            }
            Kind::Product(p) => {
                // A product already computed (something read it alone) is read, in order
                // (it may be read as another shape), not computed again.
                let computed = p.cell.get().and_then(Weak::upgrade);
                if let Some(cell) = computed.filter(|c| !c.lazy.is_pending()) {
                    let layout = Layout::contiguous(&self.shape);
                    let n = self.read(&cell, &layout, e.dtype);
                    self.done.insert(Arc::as_ptr(e), n);
                    return n;
                }
                self.product = Some(p.clone());
                Node::Product
            }
            Kind::Scalar(v) => {
                self.scalars.push((*v, e.dtype));
                Node::Param((self.scalars.len() - 1) as u8)
            }
            Kind::Op(op, args) => {
                let input = match op {
                    FusedOp::Where => args.get(1).map_or(e.dtype, |a| a.dtype),
                    _ => args.first().map_or(e.dtype, |a| a.dtype),
                };
                let ids = args.iter().map(|a| self.node(a)).collect();
                Node::Op(*op, input, ids)
            }
        };
        let n = self.nodes.len() as u16;
        self.nodes.push((node, e.dtype));
        self.done.insert(Arc::as_ptr(e), n);
        if let Some(w) = e.cell.get() {
            self.standing.push((n, w.clone()));
        }
        n
    }

    /// The node of a read of `cell` through `layout`: one node per distinct read, as two
    /// reads of one view are one value (whose second use the kernel keeps apart, see
    /// `kernels/lazy.rs`).
    fn read(&mut self, cell: &Arc<StorageCell>, layout: &Layout, dtype: DType) -> u16 {
        if let Some(k) = self
            .reads
            .iter()
            .position(|(c, l)| Arc::ptr_eq(c, cell) && l == layout)
        {
            return self.read_nodes[k];
        }
        let n = self.nodes.len() as u16;
        self.reads.push((cell.clone(), layout.clone()));
        self.read_nodes.push(n);
        self.nodes
            .push((Node::Load((self.reads.len() - 1) as u8), dtype));
        n
    }

    /// Whether node `n` and every node it is computed from are cheap to compute again: moves,
    /// comparisons and the arithmetic of a few instructions (no division, root or
    /// transcendental function).
    fn cheap(&self, n: u16) -> bool {
        match &self.nodes[n as usize].0 {
            Node::Load(_) | Node::Param(_) => true,
            Node::Op(op, _, args) => cheap_op(op) && args.iter().all(|&a| self.cheap(a)),
            Node::Product => false,
        }
    }

    /// The tensor reads of the program, their buffers looked up now.
    fn fused_reads(&self) -> Result<Vec<FusedRead>> {
        self.reads.iter().map(|(c, l)| fused_read(c, l)).collect()
    }

    /// The kernel's program over `shape`, storing `outputs`.
    fn program(&self, shape: &[usize], outputs: Vec<u16>) -> LazyProgram {
        LazyProgram {
            nodes: self.nodes.clone(),
            strided: self
                .reads
                .iter()
                .map(|(_, l)| !(l.offset == 0 && l.is_contiguous() && l.shape == shape))
                .collect(),
            params: self.scalars.iter().map(|(_, d)| *d).collect(),
            outputs,
        }
    }

    /// Dispatch the program with `outputs` stored: in its product's matmul kernel if it
    /// has one.
    fn run(&self, p: &Pending, outputs: Vec<u16>) -> Result<Vec<crate::gpu::GpuStorage>> {
        let reads = self.fused_reads()?;
        let program = self.program(&p.shape, outputs);
        let input = (
            p.shape.as_slice(),
            reads.as_slice(),
            self.scalars.as_slice(),
        );
        match &self.product {
            Some(product) => {
                let operands = [
                    fused_read(&product.a.0, &product.a.1)?,
                    fused_read(&product.b.0, &product.b.1)?,
                ];
                crate::gpu::lazy::run_product(&p.ctx, program, input, &operands, &product.plan)
            }
            None => crate::gpu::lazy::run(&p.ctx, program, input),
        }
    }
}

/// A computed cell's buffer, read through `layout` by a fused kernel.
fn fused_read(cell: &StorageCell, layout: &Layout) -> Result<FusedRead> {
    // One lock at a time: a read's data is computed, never pending.
    let (buffer, checks) = match &*cell.read() {
        Storage::Gpu(g) => (g.buf.raw().clone(), g.checks.clone()),
        Storage::Failed(e) => return Err(e.clone()),
        Storage::Cpu(_) => {
            return Err(crate::error::Error::invalid(
                "fused elementwise",
                "an operand moved off the GPU",
            ))
        }
    };
    Ok(FusedRead {
        buffer,
        layout: layout.clone(),
        checks,
    })
}

/// `op` over `dims` of a pending f32 value read whole through `layout`: one reduction
/// kernel that computes each element of the value as it reads it (a prologue), so the value
/// is never stored (if something else needs it, it is computed again then). `None` where
/// that does not apply: the reduction reads the computed value.
pub(crate) fn reduce(
    cell: &Arc<StorageCell>,
    layout: &Layout,
    op: ReduceOp,
    dims: &[usize],
) -> Option<Result<Storage>> {
    // Only a value that nothing but the reduced tensor holds: one that autograd keeps is
    // stored anyway, and computing it here too would only repeat the work.
    let alone = Arc::strong_count(cell) == 1;
    if !alone
        || fusion_disabled()
        || op.rule(DType::F32) != Reduce::Native
        || !cell.lazy.is_pending()
    {
        return None;
    }
    let (expr, shape, ctx) = {
        let slot = cell.lazy.lock();
        let p = slot.as_ref()?;
        (p.expr.clone(), p.shape.clone(), p.ctx.clone())
    };
    let whole = layout.offset == 0 && layout.is_contiguous() && layout.shape == shape;
    if expr.dtype != DType::F32 || !whole {
        return None;
    }
    // A product that a tensor holds (a weight's gradient, whose norm is taken) is computed
    // alone, and the reduction computes the rest of the expression as it reads it; a
    // product nothing else holds is computed with the expression, which the reduction
    // reads computed.
    if let Some(p) = &expr.product {
        p.cell.get().and_then(Weak::upgrade)?.settle();
    }
    let mut plan = Plan::over(&shape);
    let root = plan.node(&expr);
    // The product settled above is read as a tensor; a reduction kernel cannot compute one,
    // so should it still be pending, the value is computed by its own kernel first.
    if plan.product.is_some() {
        return None;
    }
    // A value of the expression that a tensor still holds may be read again, and computed
    // again then (a backward rule's intermediates; also a chain's temporaries, which live
    // until their statement ends): if that would repeat costly math, it is stored once
    // instead, and the reduction reads it.
    let repeats_costly_math = plan.standing.iter().any(|(n, w)| {
        w.upgrade()
            .is_some_and(|c| !Arc::ptr_eq(&c, cell) && c.lazy.is_pending() && !plan.cheap(*n))
    });
    if repeats_costly_math {
        return None;
    }
    let reads = match plan.fused_reads() {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let program = plan.program(&shape, vec![root]);
    let input = (shape.as_slice(), reads.as_slice(), plan.scalars.as_slice());
    Some(crate::gpu::lazy::reduce(&ctx, program, input, op, dims).map(Storage::Gpu))
}

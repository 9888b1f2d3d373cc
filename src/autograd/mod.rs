//! Reverse-mode automatic differentiation on a dynamic graph.
//!
//! Every op whose input requires grad records a [`Node`]: which backward rule to run and the
//! input tensors. `backward()` orders the graph topologically (each node once, iteratively,
//! so shared subgraphs are not walked twice and deep graphs do not overflow the stack), runs
//! the rules from the output back, sums the gradients of tensors used several times, and
//! accumulates into the `.grad()` of leaves. Rules are written with tensor ops, so they run on
//! the tensors' own device, and with `create_graph` they record a graph of their own.

pub(crate) mod forward;
mod gradcheck;
mod rules;

pub use gradcheck::{gradcheck, GradcheckOptions};
pub(crate) use rules::{BackwardOp, EmbedView};

use crate::error::{Error, Result};
use crate::storage::StorageCell;
use crate::tensor::Tensor;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Called with each leaf as a backward pass on this thread completes its `.grad`.
type LeafObserver = Box<dyn FnMut(&Tensor)>;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static LEAF_OBSERVER: RefCell<Option<LeafObserver>> = const { RefCell::new(None) };
}

/// Run `f` (a backward pass) with `observer` told of every leaf whose `.grad` the pass
/// completes, as it completes it (a leaf's gradient is final then: every use of the leaf
/// came earlier in the pass). Data parallelism starts exchanging gradients with this while
/// the rest of backward runs (PyTorch's post-accumulate-grad hooks).
pub(crate) fn with_leaf_observer<T>(observer: LeafObserver, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<LeafObserver>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEAF_OBSERVER.with(|o| *o.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(LEAF_OBSERVER.with(|o| o.borrow_mut().replace(observer)));
    f()
}

fn leaf_completed(t: &Tensor) {
    LEAF_OBSERVER.with(|o| {
        if let Some(observe) = o.borrow_mut().as_mut() {
            observe(t)
        }
    })
}

/// Whether ops record the graph on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped; see [`no_grad`].
#[must_use = "grad mode is restored when the guard is dropped"]
pub struct GradModeGuard {
    previous: bool,
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Turn off graph recording until the guard is dropped (PyTorch's `with torch.no_grad():`).
///
/// ```
/// use wgrad::Tensor;
/// let x = Tensor::ones(&[3])?.requires_grad_(true)?;
/// let y = {
///     let _guard = wgrad::no_grad();
///     &x * 2.0
/// };
/// assert!(!y.requires_grad());
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn no_grad() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Set grad mode until the guard is dropped.
pub fn set_grad_enabled(enabled: bool) -> GradModeGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(enabled));
    GradModeGuard { previous }
}

/// Run `f` with graph recording off.
pub fn no_grad_scope<T>(f: impl FnOnce() -> T) -> T {
    let _g = no_grad();
    f()
}

/// Which value of a node a recorded storage version belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Saved {
    Input(usize),
    Output,
    /// A tensor the rule keeps (an index, a reduction's result).
    Kept,
}

/// A recorded op: its backward rule, its inputs and their storage versions at the time.
pub(crate) struct Node {
    pub(crate) op: BackwardOp,
    /// The inputs: the graph's edges and the values the rule reads. A backward pass that does
    /// not retain the graph empties them after running the rule, freeing what only the graph
    /// kept alive.
    inputs: std::sync::Mutex<Vec<Tensor>>,
    versions: Vec<(Arc<StorageCell>, u64, Saved)>,
    /// Set by a backward pass that did not retain the graph, for a rule that reads saved
    /// values: a second pass through it is an error, as in PyTorch (it silently accumulated
    /// before).
    released: std::sync::atomic::AtomicBool,
}

impl Drop for Node {
    /// Drop the graph below this node iteratively: the default recursion (tensor, node,
    /// inputs, their nodes, ...) would overflow the stack on a long chain of ops. Each input
    /// that this node held the last handle to gives up its own node's inputs to the work
    /// list before it goes.
    fn drop(&mut self) {
        let mut pending = std::mem::take(self.inputs.get_mut().unwrap_or_else(|e| e.into_inner()));
        while let Some(t) = pending.pop() {
            let Ok(inner) = Arc::try_unwrap(t.0) else {
                continue;
            };
            if let Some(node) = inner.grad_fn {
                if let Ok(mut node) = Arc::try_unwrap(node) {
                    pending.append(node.inputs.get_mut().unwrap_or_else(|e| e.into_inner()));
                }
            }
        }
    }
}

impl Node {
    /// The node's inputs (handles: cheap to clone), empty once a backward pass released it.
    pub(crate) fn inputs(&self) -> Vec<Tensor> {
        self.with_inputs(<[Tensor]>::to_vec)
    }

    /// `f` of the inputs, without copying them: the graph walks call this once per node.
    /// `f` must not reach this node's inputs again (the lock is held while it runs).
    pub(crate) fn with_inputs<R>(&self, f: impl FnOnce(&[Tensor]) -> R) -> R {
        f(&self.inputs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// PyTorch-style name of the node, e.g. `MulBackward0`.
    pub fn name(&self) -> String {
        self.op.name()
    }
}

/// The graph node of an op whose inputs need gradients. `output` is the storage of the op's
/// result: its version is kept when the rule reads the output.
pub(crate) fn node(op: BackwardOp, inputs: &[&Tensor], output: &Arc<StorageCell>) -> Arc<Node> {
    let reads = op.reads();
    let mut versions: Vec<(Arc<StorageCell>, u64, Saved)> = Vec::new();
    if reads.inputs() {
        versions.extend(
            inputs
                .iter()
                .enumerate()
                .map(|(i, t)| (t.storage().clone(), t.storage().version(), Saved::Input(i))),
        );
    }
    if reads.output() {
        versions.push((output.clone(), output.version(), Saved::Output));
    }
    for t in op.saved() {
        versions.push((t.storage().clone(), t.storage().version(), Saved::Kept));
    }
    Arc::new(Node {
        op,
        inputs: std::sync::Mutex::new(inputs.iter().map(|t| (*t).clone()).collect()),
        versions,
        released: std::sync::atomic::AtomicBool::new(false),
    })
}

/// Where a backward pass puts the gradients it computes.
enum Sink<'a> {
    /// Into the `.grad` of every leaf that requires grad (`backward()`).
    Leaves,
    /// Into the returned slots of these tensors, leaves or not; no `.grad` is written
    /// (`torch.autograd.grad`).
    Inputs(&'a [&'a Tensor], Vec<Option<Tensor>>),
}

/// Run backward from `root` with upstream gradient `grad`, accumulating into leaves.
pub(crate) fn run_backward(
    root: &Tensor,
    grad: Tensor,
    create_graph: bool,
    retain_graph: bool,
) -> Result<()> {
    run(root, grad, create_graph, retain_graph, &mut Sink::Leaves)
}

/// The gradients of `root` (upstream gradient `grad`) with respect to `inputs`, leaf or
/// not, without touching any `.grad`. An input the graph does not reach is an error, as in
/// PyTorch without `allow_unused`.
pub(crate) fn gradients(
    root: &Tensor,
    grad: Tensor,
    inputs: &[&Tensor],
    create_graph: bool,
) -> Result<Vec<Tensor>> {
    gradients_of(root, grad, inputs, create_graph, create_graph, false)
}

/// [`gradients`], with zeros for the inputs the graph does not reach when `allow_unused`
/// (`torch.func`'s transforms: a function that ignores its argument has derivative 0). A
/// root that does not require grad then gives zeros for every input.
pub(crate) fn gradients_of(
    root: &Tensor,
    grad: Tensor,
    inputs: &[&Tensor],
    create_graph: bool,
    retain_graph: bool,
    allow_unused: bool,
) -> Result<Vec<Tensor>> {
    let mut sink = Sink::Inputs(inputs, vec![None; inputs.len()]);
    // A root without a graph reaches nothing: with allow_unused every input gets zeros.
    if !allow_unused || root.requires_grad() {
        run(root, grad, create_graph, retain_graph, &mut sink)?;
    }
    let Sink::Inputs(_, found) = sink else {
        return Err(Error::autograd("grad", "the gradient slots were lost"));
    };
    // A released node has lost its edges, so an input behind it looks unused: say why.
    let released_on_the_way = || {
        topological_order(root).iter().any(|t| {
            t.0.grad_fn
                .as_ref()
                .is_some_and(|n| n.released.load(std::sync::atomic::Ordering::Relaxed))
        })
    };
    found
        .into_iter()
        .zip(inputs)
        .enumerate()
        .map(|(i, (g, t))| {
            if g.is_none() && released_on_the_way() {
                return Err(Error::autograd(
                    "grad",
                    format!("input {i} (shape {:?}) does not appear in the graph of the output as it stands: an earlier backward released part of that graph (trying to backward through the graph a second time needs retain_graph on the first), or the input was not used to compute it", t.shape()),
                ));
            }
            if g.is_none() && allow_unused {
                return Tensor::zeros_like(t);
            }
            g.ok_or_else(|| {
                Error::autograd(
                    "grad",
                    format!("input {i} (shape {:?}) does not appear in the graph of the output: it was not used to compute it, or only through detached values", t.shape()),
                )
            })
        })
        .collect()
}

fn run(
    root: &Tensor,
    grad: Tensor,
    create_graph: bool,
    retain_graph: bool,
    sink: &mut Sink<'_>,
) -> Result<()> {
    // Gradients take the dtypes the forward pass chose, whatever autocast is open now.
    let _no_autocast = crate::autocast::suspended();
    if !root.requires_grad() {
        return Err(Error::autograd(
            "backward",
            "element 0 of tensors does not require grad and does not have a grad_fn",
        ));
    }
    let _mode = set_grad_enabled(create_graph);
    let order = topological_order(root);
    // With named inputs, only the part of the graph that leads to them runs.
    let needed: Option<HashSet<u64>> = match sink {
        Sink::Leaves => None,
        Sink::Inputs(inputs, _) => {
            let targets: HashSet<u64> = inputs.iter().map(|t| t.id()).collect();
            let mut needed = HashSet::new();
            for t in &order {
                let leads = targets.contains(&t.id())
                    || t.0.grad_fn.as_ref().is_some_and(|n| {
                        n.with_inputs(|inputs| inputs.iter().any(|i| needed.contains(&i.id())))
                    });
                if leads {
                    needed.insert(t.id());
                }
            }
            Some(needed)
        }
    };
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(root.id(), grad);
    for t in order.iter().rev() {
        if needed.as_ref().is_some_and(|n| !n.contains(&t.id())) {
            continue;
        }
        let Some(g) = grads.remove(&t.id()) else {
            continue;
        };
        if let Sink::Inputs(inputs, found) = sink {
            // Every use of `t` is later in the graph, so its gradient is complete here.
            for (slot, input) in found.iter_mut().zip(inputs.iter()) {
                if input.id() == t.id() {
                    *slot = Some(g.clone());
                }
            }
        }
        let Some(node) = &t.0.grad_fn else {
            if let Sink::Leaves = sink {
                accumulate_leaf(t, g, create_graph)?;
                leaf_completed(t);
            }
            continue;
        };
        for (cell, version, saved) in &node.versions {
            if cell.version() != *version {
                let what = match *saved {
                    Saved::Input(i) => format!(
                        "input {i} of {} (shape {:?})",
                        node.name(),
                        node.inputs()
                            .get(i)
                            .map(|t| t.shape().to_vec())
                            .unwrap_or_default()
                    ),
                    Saved::Output => {
                        format!("the output of {} (shape {:?})", node.name(), t.shape())
                    }
                    Saved::Kept => {
                        format!("a tensor saved by {} (an index or its result)", node.name())
                    }
                };
                return Err(Error::autograd(
                    "backward",
                    format!(
                        "one of the variables needed for gradient computation has been modified by an inplace operation: {what} is at version {}; expected version {version}",
                        cell.version()
                    ),
                ));
            }
        }
        let reads_saved = node.op.reads() != crate::op::Reads::Nothing;
        if reads_saved && node.released.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::autograd(
                "backward",
                format!(
                    "trying to backward through the graph a second time: the saved values of {} were released by the first backward; use retain_graph (backward_with_options) on the first",
                    node.name()
                ),
            ));
        }
        let inputs = node.inputs();
        if !create_graph && accumulate_view_grad(&node.op, &g, &inputs, &mut grads)? {
            continue;
        }
        let input_grads = rules::backward(&node.op, &g, &inputs, t)?;
        if reads_saved && !retain_graph {
            node.released
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // Free the saved values (the traversal order keeps them until this pass ends).
            node.inputs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        for (input, ig) in inputs.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            if !input.requires_grad() || needed.as_ref().is_some_and(|n| !n.contains(&input.id())) {
                continue;
            }
            if ig.shape() != input.shape() {
                return Err(Error::autograd(
                    "backward",
                    format!(
                        "{} produced a gradient of shape {:?} for an input of shape {:?}",
                        node.name(),
                        ig.shape(),
                        input.shape()
                    ),
                ));
            }
            match grads.remove(&input.id()) {
                Some(prev) => grads.insert(input.id(), prev.add(&ig)?),
                None => grads.insert(input.id(), ig),
            };
        }
    }
    Ok(())
}

/// The gradient of a slice or select of a tensor whose gradient so far is a buffer of this
/// pass alone: added into that buffer's part in place, instead of placed into zeros of the
/// whole shape and added whole (a recurrent layer's input takes one select per time step:
/// the zeros and the adds were most of its backward pass). True when done.
fn accumulate_view_grad(
    op: &BackwardOp,
    g: &Tensor,
    inputs: &[Tensor],
    grads: &mut HashMap<u64, Tensor>,
) -> Result<bool> {
    // The part of the input a view op took; every other op has a rule of its own.
    let take: &dyn Fn(&Tensor) -> Result<Tensor> = match op {
        BackwardOp::Slice {
            dim,
            start,
            stop,
            step,
        } => &|t| {
            t.slice(
                *dim as isize,
                Some(*start as isize),
                Some(*stop as isize),
                *step as isize,
            )
        },
        BackwardOp::Select { dim, index } => &|t| t.select(*dim as isize, *index as isize),
        _ => return Ok(false),
    };
    let Some(prev) = inputs.first().and_then(|input| {
        grads
            .get(&input.id())
            .filter(|prev| prev.shape() == input.shape())
    }) else {
        return Ok(false);
    };
    // Only a buffer nothing else holds: no other tensor sees the write.
    let owned = std::sync::Arc::strong_count(&prev.0) == 1
        && std::sync::Arc::strong_count(&prev.0.storage) == 1
        && prev.0.grad_fn.is_none()
        && prev.layout().is_contiguous()
        && prev.dtype() == g.dtype();
    if !owned {
        return Ok(false);
    }
    let part = take(prev)?;
    part.add_(g)?;
    Ok(true)
}

/// Add `g` into a leaf's `.grad`: in place when no graph is being built (so a handle taken
/// with `grad()` sees the sum, as in PyTorch), else as a new tensor that carries a graph.
fn accumulate_leaf(t: &Tensor, g: Tensor, create_graph: bool) -> Result<()> {
    let mut slot = t.0.grad.lock().unwrap_or_else(|e| e.into_inner());
    *slot = Some(match slot.take() {
        Some(prev) if !create_graph && !prev.requires_grad() => {
            prev.add_(&g)?;
            prev
        }
        Some(prev) => prev.add(&g)?,
        None if create_graph => g,
        // A gradient that nothing else refers to can be kept as it is; a shared one (the
        // same upstream gradient handed to both operands of an add, say) is copied, since
        // later accumulation writes into it.
        None if Arc::strong_count(&g.0) == 1
            && Arc::strong_count(g.storage()) == 1
            && g.is_contiguous() =>
        {
            g.detach()
        }
        None => g.detach().contiguous_copy()?,
    });
    Ok(())
}

/// Tensors reachable from `root` through grad_fn edges, inputs before the tensors computed
/// from them. Iterative depth-first search; each tensor appears once.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = &t.0.grad_fn {
            node.with_inputs(|inputs| {
                // Last input pushed first, so the first input (a layer's activations) is
                // explored first and its other inputs (the layer's weight and bias) come
                // right after the layer in the reversed order: backward completes a
                // layer's parameter gradients as it passes the layer, not after every layer
                // before it (data parallelism exchanges them while backward goes on).
                for input in inputs.iter().rev() {
                    if input.requires_grad() && !visited.contains(&input.id()) {
                        stack.push((input.clone(), false));
                    }
                }
            });
        }
    }
    order
}

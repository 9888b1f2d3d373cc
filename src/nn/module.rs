//! What a module is: its parameters, buffers, training flags and submodules, visited by
//! name. `#[derive(Module)]` writes the visit for a struct; everything else (named
//! parameters, `train`/`eval`, `to_device`, `apply`, checkpoints) follows from it here, for
//! the built-in layers and a user's models alike.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};

/// One piece of a module's state, as [`Module::visit`] reports it.
pub enum Item<'a> {
    /// A trainable tensor.
    Parameter(&'a Tensor),
    /// A tensor saved with the state but not trained (BatchNorm's running statistics).
    Buffer(&'a Tensor),
    /// A training/evaluation switch (Dropout, BatchNorm).
    Training(&'a Training),
}

/// A piece of a module's state, mutably ([`Module::visit_mut`]).
pub enum ItemMut<'a> {
    /// A trainable tensor.
    Parameter(&'a mut Tensor),
    /// A saved, untrained tensor.
    Buffer(&'a mut Tensor),
    /// A module (reported after its own state), for [`Module::apply`].
    Module(&'a mut dyn Any),
}

/// A module's training flag: `true` (training) until [`Module::eval`] or `train(false)`
/// reaches it. A custom module that behaves differently in evaluation holds one.
#[derive(Debug)]
pub struct Training(AtomicBool);

impl Default for Training {
    fn default() -> Self {
        Training(AtomicBool::new(true))
    }
}

impl Training {
    /// Whether the module is in training mode.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed)
    }
}

/// A layer or a model: tensors and submodules under PyTorch-style dotted names.
///
/// Write `#[derive(Module)]` on a struct rather than implementing this by hand: the derive
/// visits every field (a forgotten field cannot happen). The computation is a separate
/// trait, [`Forward`], or a method of the struct with any signature.
///
/// ```
/// use wgrad::nn::{self, Forward, Module};
/// use wgrad::{Device, Result, Tensor};
///
/// #[derive(Module)]
/// struct Mlp {
///     hidden: nn::Linear,
///     out: nn::Linear,
///     drop: nn::Dropout,
/// }
///
/// impl Forward for Mlp {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         self.out.forward(&self.drop.forward(&self.hidden.forward(x)?.relu()?)?)
///     }
/// }
///
/// let dev = Device::Cpu;
/// let mlp = Mlp { hidden: nn::Linear::new(4, 8, &dev)?, out: nn::Linear::new(8, 2, &dev)?, drop: nn::Dropout::new(0.5)? };
/// let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]);
/// mlp.eval(); // reaches the Dropout
/// assert!(!mlp.drop.is_training());
/// # Ok::<(), wgrad::Error>(())
/// ```
///
/// A field that is neither state, a submodule nor a plain setting cannot be forgotten: the
/// struct does not compile until the field says what it is.
///
/// ```compile_fail
/// use wgrad::nn::{self, Module};
/// struct Vocabulary(Vec<String>);
/// #[derive(Module)]
/// struct Tagger {
///     embed: nn::Embedding,
///     vocab: Vocabulary, // error: `Vocabulary` is not a `Field`
/// }
/// ```
///
/// ```
/// use wgrad::nn::{self, Module};
/// struct Vocabulary(Vec<String>);
/// #[derive(Module)]
/// struct Tagger {
///     embed: nn::Embedding,
///     #[module(skip)]
///     vocab: Vocabulary,
/// }
/// ```
pub trait Module: Send + Sync {
    /// Report every parameter, buffer and training flag, with `prefix` before its name.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, Item<'_>));

    /// Report every parameter and buffer mutably, and each module after its own state.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ItemMut<'_>));

    /// Trainable parameters with PyTorch-style dotted names (`0.weight`, `fc.bias`).
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |name, item| {
            if let Item::Parameter(t) = item {
                out.push((name.to_string(), t.clone()));
            }
        });
        out
    }

    /// The trainable parameters (for an optimizer).
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Saved, untrained state (BatchNorm's running statistics), by name.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |name, item| {
            if let Item::Buffer(t) = item {
                out.push((name.to_string(), t.clone()));
            }
        });
        out
    }

    /// Parameters and buffers, what a checkpoint holds (PyTorch's `state_dict`).
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |name, item| match item {
            Item::Parameter(t) | Item::Buffer(t) => out.push((name.to_string(), t.clone())),
            Item::Training(_) => {}
        });
        out
    }

    /// The parameter or buffer called `name` (`"blocks.1.conv.weight"`).
    fn get(&self, name: &str) -> Option<Tensor> {
        self.state()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// Number of trainable elements.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }

    /// Switch every submodule to training (`true`) or evaluation mode (`false`).
    fn train(&self, training: bool) {
        self.visit("", &mut |_, item| {
            if let Item::Training(t) = item {
                t.set(training)
            }
        });
    }

    /// Evaluation mode for every submodule (`train(false)`).
    fn eval(&self) {
        self.train(false)
    }

    /// Whether the module is in training mode (the first flag found; a module with no
    /// training-dependent layer is always "training", as in PyTorch).
    fn is_training(&self) -> bool {
        let mut mode = None;
        self.visit("", &mut |_, item| {
            if let (Item::Training(t), None) = (item, mode) {
                mode = Some(t.get());
            }
        });
        mode.unwrap_or(true)
    }

    /// Forget the parameters' gradients.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Move every parameter and buffer to `device` (parameters stay trainable leaves).
    /// On an error nothing has been replaced.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        self.replace_leaves("to_device", &mut |t| t.to_device(device))
    }

    /// Convert every floating-point parameter and buffer to the float `dtype` (PyTorch's
    /// `model.to(torch.bfloat16)`; integer buffers such as BatchNorm's batch count stay).
    /// Parameters stay trainable leaves; on an error nothing has been replaced.
    fn to_dtype(&mut self, dtype: crate::DType) -> Result<()> {
        if !dtype.is_float() {
            return Err(Error::invalid(
                "to_dtype",
                format!("a module's parameters convert to a float dtype, not {dtype:?}"),
            ));
        }
        self.replace_leaves("to_dtype", &mut |t| {
            if t.dtype().is_float() {
                t.to_dtype(dtype)
            } else {
                Ok(t.clone())
            }
        })
    }

    /// Replace every parameter and buffer `t` by `f(t)`, detached, a trainable leaf again
    /// where `t` was one. On an error (named after `op` and the tensor) nothing changes.
    #[doc(hidden)]
    fn replace_leaves(
        &mut self,
        op: &'static str,
        f: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let mut moved = Vec::new();
        let mut failure = None;
        self.visit("", &mut |name, item| {
            if let Item::Parameter(t) | Item::Buffer(t) = item {
                if failure.is_none() {
                    match f(t).and_then(|new| as_leaf_like(t, new)) {
                        Ok(t) => moved.push(t),
                        Err(e) => failure = Some(e.context_of(op, name)),
                    }
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let mut moved = moved.into_iter();
        self.visit_mut("", &mut |_, item| {
            if let ItemMut::Parameter(t) | ItemMut::Buffer(t) = item {
                if let Some(m) = moved.next() {
                    *t = m;
                }
            }
        });
        Ok(())
    }

    /// Call `f` on every module, submodules first and then this one (PyTorch's
    /// `net.apply(init)`); `f` finds the layers it wants by type:
    /// `m.downcast_mut::<nn::Linear>()`. See [`Module::apply_to`] for one type.
    fn apply(&mut self, f: &mut dyn FnMut(&str, &mut dyn Any)) {
        self.visit_mut("", &mut |name, item| {
            if let ItemMut::Module(m) = item {
                f(name, m)
            }
        });
    }

    /// Call `f` on every module of type `M` (`net.apply_to(|l: &mut nn::Linear| ...)`),
    /// stopping at the first error.
    fn apply_to<M: 'static>(&mut self, mut f: impl FnMut(&mut M) -> Result<()>) -> Result<()>
    where
        Self: Sized,
    {
        let mut result = Ok(());
        self.apply(&mut |_, m| {
            if let (Some(m), Ok(())) = (m.downcast_mut::<M>(), &result) {
                result = f(m);
            }
        });
        result
    }
}

/// `new` detached, a trainable leaf where `old` was one.
fn as_leaf_like(old: &Tensor, new: Tensor) -> Result<Tensor> {
    let new = new.detach();
    if old.requires_grad() {
        new.requires_grad_(true)
    } else {
        Ok(new)
    }
}

impl Error {
    /// This error, saying which tensor of a module it met.
    fn context_of(self, op: &'static str, name: &str) -> Error {
        Error::invalid(op, format!("tensor {name:?}: {self}"))
    }
}

/// The computation of a module with one input and one output (what [`Sequential`] chains).
///
/// [`Sequential`]: super::Sequential
pub trait Forward {
    /// Apply the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// A module with a one-input forward, as [`super::Sequential`] holds them.
pub trait Layer: Module + Forward + Any {
    /// As `Any`, to reach the concrete layer (`seq.get::<nn::Linear>(0)`).
    fn as_any(&self) -> &dyn Any;
}

impl<T: Module + Forward + Any> Layer for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        (**self).visit(prefix, f)
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        (**self).visit_mut(prefix, f)
    }
}

impl<M: Forward + ?Sized> Forward for Box<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }
}

/// `prefix.name`, or `name` at the top.
#[doc(hidden)]
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A field of a derived module: what it contributes to the module's state. Implemented for
/// tensors (parameters), modules, `Option`/`Vec`/arrays of fields, [`Training`], and the
/// plain settings a layer keeps (numbers, bools, strings, dtypes, devices: nothing).
pub trait Field {
    /// Report this field's state under `name`.
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>));
    /// Report this field's state mutably under `name`.
    fn visit_field_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>));
}

impl Field for Tensor {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        f(name, Item::Parameter(self))
    }
    fn visit_field_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        f(name, ItemMut::Parameter(self))
    }
}

impl Field for Training {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        f(name, Item::Training(self))
    }
    fn visit_field_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, ItemMut<'_>)) {}
}

impl<M: Module + ?Sized> Field for M {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        self.visit(name, f)
    }
    fn visit_field_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        self.visit_mut(name, f)
    }
}

impl<T: Field> Field for Option<T> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        if let Some(t) = self {
            t.visit_field(name, f)
        }
    }
    fn visit_field_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        if let Some(t) = self {
            t.visit_field_mut(name, f)
        }
    }
}

/// Each item of a list under its position (`layers.0.weight`), as PyTorch's `ModuleList`.
fn visit_items<'a, T: Field + 'a>(
    items: impl Iterator<Item = &'a T>,
    name: &str,
    f: &mut dyn FnMut(&str, Item<'_>),
) {
    for (i, t) in items.enumerate() {
        t.visit_field(&join(name, &i.to_string()), f)
    }
}

fn visit_items_mut<'a, T: Field + 'a>(
    items: impl Iterator<Item = &'a mut T>,
    name: &str,
    f: &mut dyn FnMut(&str, ItemMut<'_>),
) {
    for (i, t) in items.enumerate() {
        t.visit_field_mut(&join(name, &i.to_string()), f)
    }
}

impl<T: Field> Field for Vec<T> {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        visit_items(self.iter(), name, f)
    }
    fn visit_field_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        visit_items_mut(self.iter_mut(), name, f)
    }
}

impl<T: Field, const N: usize> Field for [T; N] {
    fn visit_field(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        visit_items(self.iter(), name, f)
    }
    fn visit_field_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        visit_items_mut(self.iter_mut(), name, f)
    }
}

/// Settings a layer keeps beside its tensors: part of the module, not of its state.
macro_rules! settings {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn visit_field(&self, _: &str, _: &mut dyn FnMut(&str, Item<'_>)) {}
            fn visit_field_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, ItemMut<'_>)) {}
        }
    )*};
}
settings!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    i8,
    i16,
    i32,
    i64,
    isize,
    f32,
    f64,
    char,
    String,
    &'static str,
    crate::DType,
    Device,
    (usize, usize),
    super::Reduction
);

/// A `#[module(buffer)]` field: a tensor (or `Option` of one) saved but not trained.
pub trait BufferField {
    /// Report the buffer under `name`.
    fn visit_buffer(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>));
    /// Report the buffer mutably under `name`.
    fn visit_buffer_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>));
}

impl BufferField for Tensor {
    fn visit_buffer(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        f(name, Item::Buffer(self))
    }
    fn visit_buffer_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        f(name, ItemMut::Buffer(self))
    }
}

impl BufferField for Option<Tensor> {
    fn visit_buffer(&self, name: &str, f: &mut dyn FnMut(&str, Item<'_>)) {
        if let Some(t) = self {
            f(name, Item::Buffer(t))
        }
    }
    fn visit_buffer_mut(&mut self, name: &str, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        if let Some(t) = self {
            f(name, ItemMut::Buffer(t))
        }
    }
}

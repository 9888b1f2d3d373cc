//! The one error type of the crate. Every fallible operation returns [`Result`], and every
//! message names the operation and the shapes involved.

use crate::dtype::DType;

/// Everything that can go wrong in wgrad.
// Fields are named for what they hold: the op, the operands' shapes and dtypes.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Two shapes that the operation needs to agree do not (broadcasting included).
    #[error("{op}: shapes {lhs:?} and {rhs:?} are not compatible{}", detail_suffix(.detail))]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
        detail: String,
    },
    /// A shape argument is invalid on its own (wrong element count, bad rank, ...).
    #[error("{op}: invalid shape for tensor of shape {shape:?}: {msg}")]
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        msg: String,
    },
    /// A dimension index outside `-ndim..ndim`.
    #[error("{op}: dimension {dim} out of range for tensor of shape {shape:?} (expected -{ndim}..{ndim})", ndim = .shape.len().max(1))]
    DimOutOfRange {
        op: &'static str,
        dim: isize,
        shape: Vec<usize>,
    },
    /// An element index outside the size of its dimension.
    #[error("{op}: index {index} out of range for dimension {dim} of size {size} (tensor shape {shape:?})")]
    IndexOutOfRange {
        op: &'static str,
        index: i64,
        dim: usize,
        size: usize,
        shape: Vec<usize>,
    },
    /// Operand dtypes that the operation does not accept together.
    #[error("{op}: unsupported dtype combination {lhs:?} and {rhs:?} (shapes {lhs_shape:?}, {rhs_shape:?}){}", detail_suffix(.detail))]
    DTypeMismatch {
        op: &'static str,
        lhs: DType,
        rhs: DType,
        lhs_shape: Vec<usize>,
        rhs_shape: Vec<usize>,
        detail: String,
    },
    /// One operand's dtype is not supported by the operation.
    #[error(
        "{op}: dtype {dtype:?} not supported for tensor of shape {shape:?}, expected {expected}"
    )]
    UnsupportedDType {
        op: &'static str,
        dtype: DType,
        shape: Vec<usize>,
        expected: &'static str,
    },
    /// A backend has no kernel for this op on this dtype (the op tables in `op/` say which
    /// exist). Both backends refuse the same combinations.
    #[error("{op}: not supported for dtype {dtype:?} on the {backend} backend")]
    Unsupported {
        op: &'static str,
        dtype: DType,
        backend: &'static str,
    },
    /// Operands live on different devices.
    #[error("{op}: tensors are on different devices ({lhs} and {rhs})")]
    DeviceMismatch {
        op: &'static str,
        lhs: String,
        rhs: String,
    },
    /// `item()` or a similar scalar conversion on a tensor with more than one element.
    #[error(
        "{op}: expected a tensor with exactly one element, got shape {shape:?} ({numel} elements)"
    )]
    NotAScalar {
        op: &'static str,
        shape: Vec<usize>,
        numel: usize,
    },
    /// Data whose length does not match the requested shape.
    #[error("{op}: {len} values do not fill shape {shape:?} ({numel} elements)")]
    DataLength {
        op: &'static str,
        len: usize,
        shape: Vec<usize>,
        numel: usize,
    },
    /// An argument that is invalid for a reason other than shape or dtype.
    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },
    /// Autograd misuse: backward on a non-scalar without a gradient, in-place on a leaf that
    /// requires grad, a saved tensor modified in place, ...
    #[error("{op}: {msg}")]
    Autograd { op: &'static str, msg: String },
    /// No GPU adapter could be found.
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// A buffer larger than the device allows.
    #[error("{op}: buffer of {bytes} bytes exceeds the device limit of {limit} bytes")]
    BufferTooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },
    /// The memory for a result could not be allocated.
    #[error("{op}: could not allocate {bytes} bytes on the {device}")]
    OutOfMemory {
        op: &'static str,
        bytes: u64,
        device: &'static str,
    },
    /// The device was lost.
    #[error("device lost: {0}")]
    DeviceLost(String),
    /// Reading or writing a file failed.
    #[error("{op}: {msg}")]
    Io { op: &'static str, msg: String },
    /// An operator in an expression (`&a + &b * 2.0`) failed; `at` is the source line of
    /// that operator. The expression's result carried the error to the next call that returns
    /// a `Result` (see [`crate::Tensor::check`]).
    #[error("{error} (in the expression at {at})")]
    InExpression { at: String, error: Box<Error> },
}

/// The message, as Display shows it: `fn main() -> wgrad::Result<()>` prints a failure with
/// `Debug`, and a user should read what went wrong, not the variant's fields.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The error itself, without the expression location that an operator added.
    pub fn root(&self) -> &Error {
        match self {
            Error::InExpression { error, .. } => error.root(),
            e => e,
        }
    }

    /// `self` with the source location of the operator that raised it (the first one: an
    /// error that already has a location keeps it).
    pub(crate) fn in_expression(self, at: &std::panic::Location<'_>) -> Error {
        match self {
            e @ Error::InExpression { .. } => e,
            e => Error::InExpression {
                at: at.to_string(),
                error: Box::new(e),
            },
        }
    }

    /// A shape mismatch between two operands.
    pub(crate) fn shapes(
        op: &'static str,
        lhs: &[usize],
        rhs: &[usize],
        detail: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_shape(op: &'static str, shape: &[usize], msg: impl Into<String>) -> Self {
        Error::BadShape {
            op,
            shape: shape.to_vec(),
            msg: msg.into(),
        }
    }

    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }

    pub(crate) fn autograd(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Autograd {
            op,
            msg: msg.into(),
        }
    }
}

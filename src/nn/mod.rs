//! Layers, losses and initialisers for building and training models.
//!
//! ```
//! use wgrad::nn::{self, Forward, Module};
//! use wgrad::{Device, Tensor};
//! let dev = Device::Cpu;
//! let model = nn::Sequential::new()
//!     .add(nn::Linear::new(4, 8, &dev)?)
//!     .add(nn::ReLU)
//!     .add(nn::Linear::new(8, 3, &dev)?);
//! let logits = model.forward(&Tensor::randn([2, 4])?)?;
//! let loss = nn::cross_entropy(&logits, &Tensor::new([0, 2])?)?;
//! loss.backward()?;
//! assert_eq!(model.named_parameters()[0].0, "0.weight");
//! # Ok::<(), wgrad::Error>(())
//! ```

mod attention;
pub mod functional;
pub mod init;
mod layers;
pub(crate) mod loss;
mod module;
mod recurrent;
mod running_stats;
mod spatial;
mod transformer;

pub use attention::{multi_head_attention_forward, AttentionMasks, MultiheadAttention};
pub use layers::*;
pub use loss::{
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, huber_loss, kl_div,
    l1_loss, mse_loss, nll_loss, smooth_l1_loss, BCELoss, BCEWithLogitsLoss, CrossEntropyLoss,
    HuberLoss, KLDivLoss, KlReduction, L1Loss, MSELoss, NLLLoss, Reduction, SmoothL1Loss,
};
#[doc(hidden)]
pub use module::join;
pub use module::{BufferField, Field, Forward, Item, ItemMut, Layer, Module, Training};
pub use recurrent::{run_direction, CellKind, Direction, Recurrent, State};
pub(crate) use running_stats::RUNNING_STATS;
pub use spatial::{AdaptiveAvgPool2d, Conv1d, ConvTranspose2d, Upsample};
pub use transformer::{Activation, LayerOptions, TransformerDecoderLayer, TransformerEncoderLayer};
/// `#[derive(Module)]`: a struct of layers and tensors becomes a [`Module`].
pub use wgrad_derive::Module;

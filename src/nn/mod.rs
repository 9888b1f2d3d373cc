//! Layers, losses and initialisers for building and training models.
//!
//! ```
//! use wgrad::nn::{self, Module};
//! use wgrad::{Device, Generator, Tensor};
//! let mut g = Generator::new(0);
//! let model = nn::Sequential::new()
//!     .add(nn::Linear::new(4, 8, true, &mut g, &Device::Cpu)?)
//!     .add(nn::ReLU)
//!     .add(nn::Linear::new(8, 3, true, &mut g, &Device::Cpu)?);
//! let logits = model.forward(&Tensor::randn([2, 4])?)?;
//! let loss = nn::cross_entropy(&logits, &Tensor::new([0, 2])?, 0.0, nn::Reduction::Mean)?;
//! loss.backward()?;
//! assert_eq!(model.named_parameters()[0].0, "0.weight");
//! # Ok::<(), wgrad::Error>(())
//! ```

pub mod functional;
pub mod init;
mod layers;
mod loss;

pub use layers::*;
pub use loss::{
    binary_cross_entropy_with_logits, cross_entropy, huber_loss, l1_loss, mse_loss, nll_loss,
    Reduction,
};

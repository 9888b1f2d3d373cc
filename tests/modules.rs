//! Modules declared with `#[derive(Module)]`: PyTorch's dotted names for nested structs,
//! `Vec` and `Option` fields, buffers, `train`/`eval` reaching every submodule, `to_device`,
//! `apply`, checkpoints, and the layers' PyTorch defaults.

mod common;

use wgrad::nn::{self, Forward, Module};
use wgrad::{Device, Result, Tensor};

#[derive(Module)]
struct Block {
    conv: nn::Conv2d,
    bn: nn::BatchNorm,
    drop: Option<nn::Dropout>,
}

impl Forward for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.bn.forward(&self.conv.forward(x)?)?.relu()?;
        let y = match &self.drop {
            Some(d) => d.forward(&y)?,
            None => y,
        };
        // The residual: an operator expression, surfaced by the `?` of the next call.
        (&y + x).relu()
    }
}

#[derive(Module)]
struct Net {
    stem: nn::Conv2d,
    blocks: Vec<Block>,
    head: nn::Linear,
    #[module(buffer)]
    steps_seen: Tensor,
    /// Settings are part of the module but not of its state.
    width: usize,
}

impl Net {
    fn new(dev: &Device) -> Result<Net> {
        let width = 4;
        let block = |drop: bool| -> Result<Block> {
            Ok(Block {
                conv: nn::Conv2d::new(width, width, 3, dev)?.padding(1),
                bn: nn::BatchNorm2d::new(width, dev)?,
                drop: if drop {
                    Some(nn::Dropout::new(0.5)?)
                } else {
                    None
                },
            })
        };
        Ok(Net {
            stem: nn::Conv2d::new(1, width, 3, dev)?.padding(1).bias(false),
            blocks: vec![block(false)?, block(true)?],
            head: nn::Linear::new(width * 8 * 8, 10, dev)?,
            steps_seen: Tensor::zeros_on([1], (wgrad::DType::F32, dev))?,
            width,
        })
    }
}

impl Forward for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.stem.forward(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        self.head.forward(&h.flatten(1, -1)?)
    }
}

#[test]
fn derived_modules_name_every_field_like_pytorch() -> Result<()> {
    let net = Net::new(&Device::Cpu)?;
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "stem.weight",
            "blocks.0.conv.weight",
            "blocks.0.conv.bias",
            "blocks.0.bn.weight",
            "blocks.0.bn.bias",
            "blocks.1.conv.weight",
            "blocks.1.conv.bias",
            "blocks.1.bn.weight",
            "blocks.1.bn.bias",
            "head.weight",
            "head.bias",
        ]
    );
    let buffers: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        buffers,
        [
            "blocks.0.bn.running_mean",
            "blocks.0.bn.running_var",
            "blocks.0.bn.num_batches_tracked",
            "blocks.1.bn.running_mean",
            "blocks.1.bn.running_var",
            "blocks.1.bn.num_batches_tracked",
            "steps_seen",
        ]
    );
    assert_eq!(net.width, 4);
    assert!(net.parameters().iter().all(|p| p.requires_grad()));
    assert_eq!(
        net.get("blocks.1.conv.weight").unwrap().shape(),
        &[4, 4, 3, 3]
    );
    assert_eq!(net.num_parameters(), 36 + 2 * (144 + 4 + 8) + 2560 + 10);
    Ok(())
}

#[test]
fn eval_reaches_nested_batch_norm_and_dropout() -> Result<()> {
    for dev in common::devices() {
        let net = wgrad::seeded(0, || Net::new(&dev))?;
        assert!(net.is_training());
        net.eval();
        assert!(!net.is_training());
        assert!(!net.blocks[1].drop.as_ref().unwrap().is_training());
        assert!(!net.blocks[0].bn.is_training());
        // In evaluation the forward is deterministic (no dropout) and leaves the running
        // statistics alone (no batch statistics).
        let x = wgrad::seeded(1, || Tensor::randn_on([2, 1, 8, 8], &dev))?;
        let before = net.blocks[0].bn.running_mean.to_vec::<f32>()?;
        let a = net.forward(&x)?.to_vec::<f32>()?;
        let b = net.forward(&x)?.to_vec::<f32>()?;
        assert_eq!(a, b, "{dev}");
        assert_eq!(net.blocks[0].bn.running_mean.to_vec::<f32>()?, before);
        net.train(true);
        assert!(net.blocks[1].drop.as_ref().unwrap().is_training());
        net.forward(&x)?;
        assert_ne!(net.blocks[0].bn.running_mean.to_vec::<f32>()?, before);
    }
    Ok(())
}

#[test]
fn to_device_moves_every_tensor_and_keeps_them_trainable() -> Result<()> {
    let devices = common::devices();
    let Some(gpu) = devices.iter().find(|d| !matches!(d, Device::Cpu)) else {
        return Ok(());
    };
    let mut net = wgrad::seeded(2, || Net::new(&Device::Cpu))?;
    let x = wgrad::seeded(3, || Tensor::randn([2, 1, 8, 8]))?;
    net.eval();
    let on_cpu = net.forward(&x)?.to_vec::<f32>()?;
    net.to_device(gpu)?;
    assert!(net.state().iter().all(|(_, t)| t.device() == gpu));
    assert!(net
        .parameters()
        .iter()
        .all(|p| p.requires_grad() && p.is_leaf()));
    let on_gpu = net.forward(&x.to_device(gpu)?)?.to_vec::<f32>()?;
    common::assert_close(
        &on_gpu,
        &on_cpu.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-4,
        1e-4,
        "the same net after to_device",
    );
    // It trains where it now lives.
    net.train(true);
    let y = Tensor::new([3i64, 7])?.to_device(gpu)?;
    nn::cross_entropy(&net.forward(&x.to_device(gpu)?)?, &y)?.backward()?;
    assert!(net.head.weight.grad().is_some());
    Ok(())
}

#[test]
fn apply_reaches_every_layer_of_a_type() -> Result<()> {
    let mut net = Net::new(&Device::Cpu)?;
    let mut convs = 0;
    net.apply_to(|c: &mut nn::Conv2d| {
        convs += 1;
        c.weight = nn::init::xavier_uniform(
            c.weight.shape(),
            1.0,
            &mut wgrad::Generator::new(0),
            c.weight.device(),
        )?
        .requires_grad_(true)?;
        Ok(())
    })?;
    assert_eq!(convs, 3);
    let mut names = Vec::new();
    net.apply(&mut |name, m| {
        if m.is::<nn::Linear>() {
            names.push(name.to_string())
        }
    });
    assert_eq!(names, ["head"]);
    // The replaced weights are the ones the module reports.
    let bound = (6.0f32 / (36.0 + 36.0)).sqrt();
    let w = net.get("blocks.0.conv.weight").unwrap().to_vec::<f32>()?;
    assert!(w.iter().all(|v| v.abs() <= bound));
    Ok(())
}

#[test]
fn sequential_names_by_position_and_gives_its_layers_back() -> Result<()> {
    let dev = Device::Cpu;
    let seq = nn::Sequential::new()
        .add(nn::Linear::new(3, 4, &dev)?)
        .add(nn::ReLU)
        .add(nn::Linear::new(4, 2, &dev)?.bias(false));
    let names: Vec<String> = seq.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight"]);
    assert_eq!(seq.get::<nn::Linear>(2).unwrap().weight.shape(), &[2, 4]);
    assert!(seq.get::<nn::Linear>(1).is_none());
    Ok(())
}

#[test]
fn layers_take_pytorch_defaults_and_options() -> Result<()> {
    let dev = Device::Cpu;
    let conv = nn::Conv2d::new(4, 8, 3, &dev)?;
    assert_eq!(
        (conv.stride, conv.padding, conv.dilation, conv.groups),
        (1, 0, 1, 1)
    );
    assert!(conv.bias.is_some());
    let grouped = nn::Conv2d::new(4, 8, 3, &dev)?
        .groups(2)?
        .dilation(2)
        .padding(2)
        .stride(2);
    assert_eq!(grouped.weight.shape(), &[8, 2, 3, 3]);
    let y = grouped.forward(&Tensor::randn([1, 4, 9, 9])?)?;
    assert_eq!(y.shape(), &[1, 8, 5, 5]);
    assert!(nn::Conv2d::new(4, 8, 3, &dev)?.groups(3).is_err());
    let pool = nn::MaxPool2d::new(2);
    assert_eq!((pool.kernel_size, pool.stride), (2, 2));
    let lin = nn::Linear::new(64, 256, &dev)?;
    assert_eq!(lin.weight.shape(), &[256, 64]);
    let bound = 1.0 / 8.0;
    assert!(lin.weight.to_vec::<f32>()?.iter().all(|v| v.abs() <= bound));
    // The global generator decides the weights: manual_seed in one thread, seeded anywhere.
    let a = wgrad::seeded(5, || nn::Linear::new(3, 3, &dev))?;
    let b = wgrad::seeded(5, || nn::Linear::new(3, 3, &dev))?;
    assert_eq!(a.weight.to_vec::<f32>()?, b.weight.to_vec::<f32>()?);
    Ok(())
}

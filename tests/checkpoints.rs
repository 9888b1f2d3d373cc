//! Checkpoints: a run saved mid-training and resumed gives bit-identical losses to one
//! that never stopped (model, optimizer state and learning rate, scheduler position and the
//! generator that dropout draws from), on every device; a model loads from a checkpoint
//! file; strict and non-strict loads; IO errors name the path and the reason.

mod common;

use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, CosineAnnealingLr, LrScheduler, Optimizer};
use wgrad::{Device, Result, Tensor};

#[derive(Module)]
struct Small {
    conv: nn::Conv2d,
    bn: nn::BatchNorm,
    drop: nn::Dropout,
    fc: nn::Linear,
}

impl Small {
    fn new(dev: &Device) -> Result<Small> {
        Ok(Small {
            conv: nn::Conv2d::new(1, 4, 3, dev)?.padding(1),
            bn: nn::BatchNorm2d::new(4, dev)?,
            drop: nn::Dropout::new(0.25)?,
            fc: nn::Linear::new(4 * 4 * 4, 3, dev)?,
        })
    }
}

impl Forward for Small {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h =
            nn::functional::max_pool2d(&self.bn.forward(&self.conv.forward(x)?)?.relu()?, 2, 2)?;
        self.fc.forward(&self.drop.forward(&h.flatten(1, -1)?)?)
    }
}

fn batches(dev: &Device) -> Result<Vec<(Tensor, Tensor)>> {
    wgrad::seeded(11, || {
        (0..6)
            .map(|_| {
                Ok((
                    Tensor::randn_on([8, 1, 8, 8], dev)?,
                    Tensor::randint_on(0, 3, [8], dev)?,
                ))
            })
            .collect()
    })
}

/// One training step; the loss's bits.
fn step(
    model: &Small,
    opt: &mut Adam,
    sched: &mut CosineAnnealingLr,
    (x, y): &(Tensor, Tensor),
) -> Result<u32> {
    opt.zero_grad();
    let loss = nn::cross_entropy(&model.forward(x)?, y)?;
    loss.backward()?;
    opt.step()?;
    sched.step(opt);
    Ok(loss.item::<f32>()?.to_bits())
}

#[test]
fn a_resumed_run_gives_bit_identical_losses() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wgrad-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for dev in common::devices() {
        let data = batches(&dev)?;
        let fresh = |seed: u64| -> Result<(Small, Adam, CosineAnnealingLr)> {
            let model = wgrad::seeded(seed, || Small::new(&dev))?;
            let opt = Adam::new(model.parameters(), 1e-2).weight_decay(1e-3);
            let sched = CosineAnnealingLr::new(&opt, 10, 1e-4);
            Ok((model, opt, sched))
        };
        // The run that never stops (its dropout draws from its own seeded stream).
        let straight = wgrad::seeded(5, || -> Result<Vec<u32>> {
            let (model, mut opt, mut sched) = fresh(0)?;
            data.iter()
                .map(|b| step(&model, &mut opt, &mut sched, b))
                .collect()
        })?;
        // Three steps, a checkpoint, and a new process's worth of fresh objects.
        let path = dir.join(format!(
            "run-{}.safetensors",
            dev.to_string().replace(' ', "_")
        ));
        let first = wgrad::seeded(5, || -> Result<Vec<u32>> {
            let (model, mut opt, mut sched) = fresh(0)?;
            let losses = data[..3]
                .iter()
                .map(|b| step(&model, &mut opt, &mut sched, b))
                .collect::<Result<Vec<u32>>>()?;
            wgrad::io::save_checkpoint(&path, &model, &opt, Some(&sched))?;
            Ok(losses)
        })?;
        let rest = wgrad::seeded(99, || -> Result<Vec<u32>> {
            let (model, mut opt, mut sched) = fresh(1)?;
            wgrad::io::load_checkpoint(&path, &model, &mut opt, Some(&mut sched))?;
            assert_eq!(opt.lr().to_bits(), {
                let (_, o, mut s) = fresh(0)?;
                let mut o = o;
                for _ in 0..3 {
                    s.step(&mut o);
                }
                o.lr().to_bits()
            });
            data[3..]
                .iter()
                .map(|b| step(&model, &mut opt, &mut sched, b))
                .collect()
        })?;
        let resumed: Vec<u32> = first.into_iter().chain(rest).collect();
        assert_eq!(resumed, straight, "{dev}: losses of the resumed run");

        // The model part of a checkpoint loads into a model on its own.
        let model = wgrad::seeded(3, || Small::new(&dev))?;
        wgrad::io::load_module(&model, &path)?;
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn strict_and_non_strict_loads() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wgrad-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seq.safetensors");
    let dev = Device::Cpu;
    let big = nn::Sequential::new()
        .add(nn::Linear::new(4, 4, &dev)?)
        .add(nn::ReLU)
        .add(nn::Linear::new(4, 2, &dev)?);
    wgrad::io::save_module(&big, &path)?;
    // A model with only the first layer: strict refuses the extra tensors, non-strict
    // loads what matches and reports the rest.
    let small = nn::Sequential::new().add(nn::Linear::new(4, 4, &dev)?);
    let e = wgrad::io::load_module(&small, &path).unwrap_err();
    assert!(e.to_string().contains("unexpected tensor \"2."), "{e}");
    let report = wgrad::io::load_module_with(&small, &path, false)?;
    assert_eq!(report.unexpected, ["2.bias", "2.weight"]);
    assert!(report.missing.is_empty());
    assert_eq!(
        small.parameters()[0].to_vec::<f32>()?,
        big.parameters()[0].to_vec::<f32>()?
    );
    // A model with more: strict names what is missing; non-strict keeps it.
    let more = nn::Sequential::new()
        .add(nn::Linear::new(4, 4, &dev)?)
        .add(nn::ReLU)
        .add(nn::Linear::new(4, 2, &dev)?)
        .add(nn::Linear::new(2, 2, &dev)?);
    let e = wgrad::io::load_module(&more, &path).unwrap_err();
    assert!(e.to_string().contains("missing tensor \"3.weight\""), "{e}");
    let kept = more.parameters()[4].to_vec::<f32>()?;
    let report = wgrad::io::load_module_with(&more, &path, false)?;
    assert_eq!(report.missing, ["3.weight", "3.bias"]);
    assert_eq!(more.parameters()[4].to_vec::<f32>()?, kept);
    // Shapes must match even when not strict.
    let wrong = nn::Sequential::new().add(nn::Linear::new(4, 5, &dev)?);
    assert!(wgrad::io::load_module_with(&wrong, &path, false).is_err());
    // A plain state file is not a checkpoint.
    let mut opt = Adam::new(big.parameters(), 1e-3);
    let e = wgrad::io::load_checkpoint(&path, &big, &mut opt, None).unwrap_err();
    assert!(e.to_string().contains("not a checkpoint"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn io_errors_name_the_path_and_the_reason() -> Result<()> {
    let model = nn::Linear::new(2, 2, &Device::Cpu)?;
    let missing = std::env::temp_dir()
        .join("wgrad-no-such-folder")
        .join("m.safetensors");
    let e = wgrad::io::save_module(&model, &missing).unwrap_err();
    let text = format!("{e:?}");
    assert!(
        text.contains("wgrad-no-such-folder") && text.contains("does not exist"),
        "{text}"
    );
    assert!(!text.contains("Os {"), "{text}");
    let e = wgrad::io::load_module(&model, &missing).unwrap_err();
    let text = format!("{e:?}");
    assert!(
        text.contains("m.safetensors") && text.contains("No such file"),
        "{text}"
    );
    Ok(())
}

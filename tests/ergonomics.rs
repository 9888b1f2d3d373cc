//! PyTorch's conveniences: constructors that all take a device and dtype the same way, 0-d
//! CPU tensors and numbers mixing with tensors on any device, errors that print their
//! message from `main`, and a first run without driver noise.

mod common;

use wgrad::{DType, Device, Error, Tensor};

#[test]
fn every_constructor_takes_a_device_and_a_dtype_the_same_way() -> wgrad::Result<()> {
    for dev in common::devices() {
        let made: Vec<(&str, Tensor, DType)> = vec![
            ("zeros", Tensor::zeros_on([2, 3], &dev)?, DType::F32),
            (
                "ones",
                Tensor::ones_on([2], (DType::I64, &dev))?,
                DType::I64,
            ),
            ("full", Tensor::full_on([2], 7, &dev)?, DType::I64),
            (
                "full f32",
                Tensor::full_on([2], 7, (&dev, DType::F32))?,
                DType::F32,
            ),
            ("arange", Tensor::arange_on(0, 4, 1, &dev)?, DType::I64),
            (
                "arange f32",
                Tensor::arange_on(0, 4, 1, (DType::F32, &dev))?,
                DType::F32,
            ),
            (
                "linspace",
                Tensor::linspace_on(0.0, 1.0, 5, &dev)?,
                DType::F32,
            ),
            ("eye", Tensor::eye_on(3, (DType::I64, &dev))?, DType::I64),
            ("rand", Tensor::rand_on([4], &dev)?, DType::F32),
            ("randn", Tensor::randn_on([4], &dev)?, DType::F32),
            ("randint", Tensor::randint_on(0, 5, [4], &dev)?, DType::I64),
            ("randperm", Tensor::randperm_on(5, &dev)?, DType::I64),
            (
                "new",
                Tensor::new_on([1, 2, 3], (DType::F32, &dev))?,
                DType::F32,
            ),
            (
                "from_vec",
                Tensor::from_vec_on(vec![1.5f32, 2.5], [2], &dev)?,
                DType::F32,
            ),
            ("scalar", Tensor::scalar_on(3, &dev)?, DType::I64),
        ];
        for (what, t, dtype) in made {
            assert_eq!(t.device(), &dev, "{what}");
            assert_eq!(t.dtype(), dtype, "{what} on {dev}");
        }
        assert_eq!(
            Tensor::eye_on(2, &dev)?.to_vec::<f32>()?,
            vec![1.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(
            Tensor::new_on([1, 2], (DType::F32, &dev))?.to_vec::<f32>()?,
            vec![1.0, 2.0]
        );
        // Random floats have no integer form: a clear error, not a cast.
        assert!(matches!(
            Tensor::randn_on([2], (DType::I64, &dev)),
            Err(Error::UnsupportedDType { op: "randn", .. })
        ));
    }
    Ok(())
}

#[test]
fn zero_dim_cpu_tensors_and_numbers_mix_with_any_device() -> wgrad::Result<()> {
    for dev in common::devices() {
        let x = Tensor::new_on([-1.0, 2.0, -3.0], &dev)?.requires_grad_(true)?;
        let zero = Tensor::scalar(0.0)?;
        // The example: a 0-d CPU tensor as the other branch of where, on a GPU.
        let y = Tensor::where_cond(&x.gt_scalar(0.0)?, &x, &zero)?;
        assert_eq!(y.device(), &dev);
        assert_eq!(y.to_vec::<f32>()?, vec![0.0, 2.0, 0.0]);
        assert_eq!(
            Tensor::where_cond(&x.gt_scalar(0.0)?, 1.0, -1.0)?.to_vec::<f32>()?,
            vec![-1.0, 1.0, -1.0]
        );
        // Operators, comparisons and in-place ops, with the gradient reaching the scalar.
        let w = Tensor::scalar(2.0)?.requires_grad_(true)?;
        let z = (&x * &w + 1.0).sum()?;
        z.backward()?;
        assert_eq!(w.grad().unwrap().to_vec::<f32>()?, vec![-2.0]);
        assert_eq!(w.grad().unwrap().device(), &Device::Cpu);
        assert_eq!(x.gt(&zero)?.to_vec::<bool>()?, vec![false, true, false]);
        let buf = Tensor::zeros_on([3], &dev)?;
        buf.add_(&Tensor::scalar(5.0)?)?;
        assert_eq!(buf.to_vec::<f32>()?, vec![5.0; 3]);
        // A tensor with dims on the CPU does not mix silently with another device.
        if dev != Device::Cpu {
            let e = (&x + &Tensor::new([1.0, 2.0, 3.0])?).check().unwrap_err();
            assert!(matches!(e.root(), Error::DeviceMismatch { .. }), "{e}");
        }
        // A plain number out of a one-element tensor.
        assert_eq!(z.item::<f32>()?, -1.0);
        assert_eq!(Tensor::scalar_on(7, &dev)?.item::<i64>()?, 7);
    }
    Ok(())
}

#[test]
fn errors_print_their_message_from_main() {
    // `fn main() -> wgrad::Result<()>` prints an error with Debug: it is the message.
    let e = Tensor::zeros([2, 3])
        .unwrap()
        .matmul(&Tensor::zeros([4, 5]).unwrap())
        .unwrap_err();
    assert_eq!(format!("{e:?}"), e.to_string());
    assert!(e.to_string().starts_with("matmul: "), "{e}");
    assert!(!format!("{e:?}").contains("ShapeMismatch {"), "{e:?}");
}

/// Run by `the_first_run_prints_no_driver_noise` in a child process.
#[test]
fn open_the_default_device() {
    if std::env::var_os("WGRAD_CHILD").is_some() {
        let dev = Device::auto().unwrap();
        println!("device: {dev}");
    }
}

#[test]
fn the_first_run_prints_no_driver_noise() {
    // As on a user's machine with no desktop session: no XDG_RUNTIME_DIR and no
    // NODEVICE_SELECT (CI sets it for the other tests).
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "open_the_default_device",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WGRAD_CHILD", "1")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("device: "), "{stdout}");
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR"),
        "driver noise on stderr:\n{stderr}"
    );
    assert!(
        !stderr.to_lowercase().contains("error"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn losses_take_options_and_refuse_bad_labels() -> wgrad::Result<()> {
    use wgrad::nn::{self, CrossEntropyLoss, Reduction};
    for dev in common::devices() {
        let logits = wgrad::seeded(4, || Tensor::randn_on([4, 3], &dev))?;
        // A label of -1 does not wrap to the last class, and 3 is past it: both are Err.
        for bad in [-1i64, 3] {
            let y = Tensor::new_on([0, bad, 1, 2], &dev)?;
            let e = nn::cross_entropy(&logits, &y).unwrap_err();
            assert!(
                matches!(e, Error::IndexOutOfRange { op: "cross_entropy", index, size: 3, .. } if index == bad),
                "{e}"
            );
        }
        // -1 is fine when it is the ignore_index.
        let y = Tensor::new_on([0, -1, 1, 2], &dev)?;
        let per = CrossEntropyLoss::new()
            .ignore_index(-1)
            .reduction(Reduction::None)
            .forward(&logits, &y)?
            .to_vec::<f32>()?;
        assert_eq!(per[1], 0.0);
        // Class weights: the mean is the weighted sum over the weights of the targets.
        let y = Tensor::new_on([0, 2, 1, 2], &dev)?;
        let w = Tensor::new_on([1.0, 2.0, 0.5], &dev)?;
        let plain = CrossEntropyLoss::new()
            .reduction(Reduction::None)
            .forward(&logits, &y)?
            .to_vec::<f32>()?;
        let weighted = CrossEntropyLoss::new()
            .weight(&w)
            .forward(&logits, &y)?
            .item::<f64>()?;
        let wy = [1.0, 0.5, 2.0, 0.5];
        let expect = plain
            .iter()
            .zip(wy)
            .map(|(&l, w)| l as f64 * w)
            .sum::<f64>()
            / wy.iter().sum::<f64>();
        assert!((weighted - expect).abs() < 1e-5, "{weighted} vs {expect}");
        // A weight of the wrong length names both sizes.
        assert!(CrossEntropyLoss::new()
            .weight(&Tensor::ones_on([4], &dev)?)
            .forward(&logits, &y)
            .is_err());
    }
    Ok(())
}

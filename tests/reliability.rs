//! Reliability under long graphs and threads: dropping a deep graph does not overflow the
//! stack, and in-place ops on tensors that two threads share never deadlock.

mod common;

use std::sync::mpsc;
use std::time::Duration;
use wgrad::{Result, Tensor};

/// Run `f` on a thread with a 2 MiB stack (a test thread's usual size) and wait at most
/// `limit` for it: a deadlock fails the test instead of hanging it.
fn on_small_thread(limit: Duration, f: impl FnOnce() -> Result<()> + Send + 'static) {
    let (done, wait) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let r = f();
            let _ = done.send(r.map_err(|e| e.to_string()));
        })
        .unwrap();
    match wait.recv_timeout(limit) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("no result within {limit:?}: deadlock or overflow"),
    }
}

#[test]
fn a_million_op_graph_drops_on_a_small_stack() {
    on_small_thread(Duration::from_secs(300), || {
        let x = Tensor::new([1.0f32])?.requires_grad_(true)?;
        let mut y = x.clone();
        for _ in 0..1_000_000 {
            y = y.mul_scalar(1.0)?;
        }
        assert!(y.requires_grad());
        drop(y);
        Ok(())
    });
}

#[test]
fn in_place_ops_across_threads_never_deadlock() {
    for dev in common::devices() {
        let a = Tensor::ones([64]).unwrap().to_device(&dev).unwrap();
        let b = Tensor::ones([64]).unwrap().to_device(&dev).unwrap();
        let (a2, b2) = (a.clone(), b.clone());
        let (x, x2) = (a.clone(), a.clone());
        on_small_thread(Duration::from_secs(120), move || {
            let t1 = std::thread::spawn(move || -> Result<()> {
                for _ in 0..2000 {
                    a.mul_(&b)?;
                    a.copy_(&b)?;
                }
                Ok(())
            });
            let t2 = std::thread::spawn(move || -> Result<()> {
                for _ in 0..2000 {
                    b2.mul_(&a2)?;
                    b2.copy_(&a2)?;
                }
                Ok(())
            });
            // One tensor read twice by an op while another thread writes it.
            let t3 = std::thread::spawn(move || -> Result<()> {
                for _ in 0..2000 {
                    drop(x.mul(&x)?);
                }
                Ok(())
            });
            for _ in 0..2000 {
                x2.mul_(1.0)?;
            }
            for t in [t1, t2, t3] {
                t.join().unwrap()?;
            }
            Ok(())
        });
    }
}

/// Autograd refuses a backward pass whose saved values were overwritten, and gives PyTorch's
/// gradients where a naive rule gives NaN.
#[test]
fn autograd_gives_right_numbers_or_an_error() -> Result<()> {
    for dev in common::devices() {
        let on = |t: Tensor| t.to_device(&dev);
        // Saved index tensors and a max's result are version-checked.
        let x = on(Tensor::new([1.0f32, 2.0, 3.0])?)?.requires_grad_(true)?;
        let index = on(Tensor::new([2i64, 0])?)?;
        let y = x.index_select(0, &index)?.sum()?;
        index.fill_(1)?;
        assert!(y.backward().is_err(), "index_select on {dev}");
        let index = on(Tensor::new([2i64, 0])?)?;
        let y = x.gather(0, &index)?.sum()?;
        index.add_(-1)?;
        assert!(y.backward().is_err(), "gather on {dev}");
        let m = x.max()?;
        m.detach().add_(1.0)?;
        assert!(m.backward().is_err(), "max on {dev}");
        // The gradient of a product at a zero is the product of the others.
        let x = on(Tensor::new([2.0f32, 0.0, 3.0])?)?.requires_grad_(true)?;
        x.prod()?.backward()?;
        assert_eq!(
            x.grad().unwrap().to_vec::<f32>()?,
            vec![0.0, 6.0, 0.0],
            "on {dev}"
        );
        let x = on(Tensor::new([[0.0f32, 0.0, 4.0], [1.0, 2.0, 3.0]])?)?.requires_grad_(true)?;
        x.prod_dims([1], false)?.sum()?.backward()?;
        assert_eq!(
            x.grad().unwrap().to_vec2::<f32>()?,
            vec![vec![0.0, 0.0, 0.0], vec![6.0, 3.0, 2.0]],
            "on {dev}"
        );
        // A NaN maximum sends the gradient to the NaN element.
        let x = on(Tensor::new([1.0f32, f32::NAN, 3.0])?)?.requires_grad_(true)?;
        let m = x.max()?;
        assert!(m.item::<f64>()?.is_nan(), "on {dev}");
        m.backward()?;
        assert_eq!(
            x.grad().unwrap().to_vec::<f32>()?,
            vec![0.0, 1.0, 0.0],
            "on {dev}"
        );
    }
    Ok(())
}

/// Negative indices are out of range, as in PyTorch (they wrapped to the end before).
#[test]
fn negative_indices_are_errors() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::new([[1.0f32, 2.0], [3.0, 4.0]])?.to_device(&dev)?;
        let minus_one = Tensor::new([-1i64])?.to_device(&dev)?;
        // On a GPU the kernel cannot stop: the error comes at the readback.
        let read = |r: Result<Tensor>| r.and_then(|t| t.to_vec2::<f32>());
        assert!(
            read(x.index_select(0, &minus_one)).is_err(),
            "index_select on {dev}"
        );
        let idx = Tensor::new([[0i64], [-1]])?.to_device(&dev)?;
        assert!(read(x.gather(1, &idx)).is_err(), "gather on {dev}");
        assert!(
            read(x.scatter_add(1, &idx, &Tensor::ones([2, 1])?.to_device(&dev)?)).is_err(),
            "scatter_add on {dev}"
        );
        let logits = Tensor::zeros([2, 3])?.to_device(&dev)?;
        let target = Tensor::new([0i64, -1])?.to_device(&dev)?;
        let loss = wgrad::nn::cross_entropy(&logits, &target);
        assert!(
            loss.and_then(|l| l.item::<f32>()).is_err(),
            "cross_entropy on {dev}"
        );
        // The device is usable again afterwards.
        assert_eq!(
            x.index_select(0, &Tensor::new([1i64])?.to_device(&dev)?)?
                .to_vec2::<f32>()?,
            vec![vec![3.0, 4.0]]
        );
    }
    Ok(())
}

/// Sizes and values with no place in a tensor are errors, never a wrapped count, a panic or
/// a saturated value.
#[test]
fn hostile_sizes_and_values_are_errors() -> Result<()> {
    use wgrad::{DType, Device, Error};
    // An element count past usize::MAX does not wrap to 0 over an empty buffer.
    let e = Tensor::from_vec(Vec::<f32>::new(), [1usize << 32, 1 << 32]).unwrap_err();
    assert!(matches!(e, Error::DataLength { .. }), "{e}");
    assert!(Tensor::eye(1 << 32).is_err());
    assert!(Tensor::linspace(0.0, 1.0, usize::MAX).is_err());
    assert!(Tensor::zeros([4])?.narrow(0, usize::MAX, 2).is_err());
    // Floats with no integer value are refused for integer tensors (PyTorch refuses them).
    assert!(Tensor::full_on([2usize], f64::NAN, (DType::I64, &Device::Cpu)).is_err());
    let i = Tensor::new([1i64, 2])?;
    assert!(i.masked_fill(&Tensor::new([true, false])?, 1e30).is_err());
    assert!(i.fill_(f64::INFINITY).is_err());
    assert_eq!(
        i.masked_fill(&Tensor::new([true, false])?, 7.9)?
            .to_vec::<i64>()?,
        vec![7, 2]
    );
    Ok(())
}

/// Sums, products, extrema and their indices over a view expanded to 2^40 elements: on the CPU the repeats
/// are counted, not walked (this aborted, gathering a 512 GiB buffer); a GPU refuses the
/// size or answers.
#[test]
fn reductions_over_huge_broadcast_views_finish() {
    on_small_thread(Duration::from_secs(60), || {
        let n = 1usize << 40;
        let row = Tensor::new([1.5f32, -2.0])?.reshape([1, 2])?;
        let huge = row.expand([n, 2])?;
        assert_eq!(huge.sum()?.item::<f64>()?, -0.5 * n as f64);
        assert_eq!(
            huge.sum_dims([0], false)?.to_vec::<f32>()?,
            vec![1.5 * n as f32, -2.0 * n as f32]
        );
        assert_eq!(huge.max()?.item::<f32>()?, 1.5);
        assert_eq!(
            row.abs()?
                .expand([n, 2])?
                .prod_dims([0], false)?
                .to_vec::<f32>()?,
            vec![f32::INFINITY; 2]
        );
        assert_eq!(Tensor::ones([1])?.expand([n])?.prod()?.item::<f32>()?, 1.0);
        assert_eq!(huge.argmin_dim(0, false)?.to_vec::<i64>()?, vec![0, 0]);
        assert_eq!(huge.max_dim(0, false)?.1.to_vec::<i64>()?, vec![0, 0]);
        assert_eq!(huge.mean()?.item::<f32>()?, -0.25);
        let ints = Tensor::new([3i64])?.expand([n])?;
        assert_eq!(ints.sum()?.item::<i64>()?, 3 << 40);
        // An extremum over broadcast dims reads each stored element once on every device
        // (a GPU walked every repeat: 2^41 reads here, hours on lavapipe), its index over one
        // such dim is 0 (softmax of such rows found the size refused only after that walk).
        for dev in common::devices() {
            let two = Tensor::new_on([[[1.5f32]], [[-2.0]]], &dev)?;
            let cube = two.expand([2usize, 1 << 20, 1 << 20])?;
            assert_eq!(
                cube.max_dims([1, 2], false)?.to_vec::<f32>()?,
                vec![1.5, -2.0]
            );
            assert_eq!(
                cube.min_dims([1, 2], false)?.to_vec::<f32>()?,
                vec![1.5, -2.0]
            );
            let rows = two.reshape([2, 1])?.expand([2usize, 1 << 32])?;
            assert_eq!(rows.argmax_dim(1, false)?.to_vec::<i64>()?, vec![0, 0]);
            assert_eq!(rows.max_dim(1, false)?.0.to_vec::<f32>()?, vec![1.5, -2.0]);
            dev.synchronize()?;
        }
        for dev in common::devices().into_iter().skip(1) {
            // Refused for its size on an adapter's binding limit, or computed: never a panic.
            if let Ok(s) = huge.to_device(&dev).and_then(|t| t.sum()) {
                assert_eq!(s.item::<f64>()?, -0.5 * n as f64);
            }
        }
        Ok(())
    });
}

/// An upsampling to 2^60 elements is refused at once on every device: each axis's index
/// list and intermediate result alone fit in memory (8 GiB, 4 GiB), together they had the
/// process killed.
#[test]
fn an_impossible_interpolation_is_refused_before_any_work() -> Result<()> {
    use wgrad::nn::functional::{interpolate, Interpolation};
    for dev in common::devices() {
        let x = Tensor::zeros_on([1, 1, 4, 4], &dev)?;
        let e = interpolate(&x, &[1 << 30, 1 << 30], Interpolation::Nearest).unwrap_err();
        assert!(e.to_string().starts_with("interpolate"), "{e}");
    }
    Ok(())
}

/// Arguments at the ends of their types (found by a sweep of 0, 2^31, 2^32, 2^40,
/// isize::MAX, usize::MAX and their negatives through the public functions, in a debug
/// build): each is an `Err` naming the op or PyTorch's answer, never an overflow panic, a
/// wrapped size read as another argument, or an abort.
#[test]
fn arguments_at_the_ends_of_their_types() -> Result<()> {
    use wgrad::nn::functional as F;
    use wgrad::s;
    for dev in common::devices() {
        let x = Tensor::arange_on(0.0, 120.0, 1.0, &dev)?.reshape([2, 3, 4, 5])?;
        let img = Tensor::arange_on(0.0, 72.0, 1.0, &dev)?.reshape([1, 2, 6, 6])?;
        let w = Tensor::ones_on([2, 2, 3, 3], &dev)?;
        // A usize past isize::MAX is not -1 (reshape's "infer", the last dim).
        assert!(x.reshape([usize::MAX]).is_err());
        assert!(x.view([usize::MAX, 60]).is_err());
        assert!(x.sum_dims([usize::MAX], false).is_err());
        assert!(x.flip([usize::MAX]).is_err());
        assert!(x.expand([usize::MAX, 3, 4, 5]).is_err());
        assert!(x.view([isize::MAX as usize, 60]).is_err());
        assert!(x.tile([isize::MAX as usize]).is_err());
        // A step past the dim picks its first element (x[::huge]), as in PyTorch.
        let first = x.slice(0, None, None, isize::MAX)?;
        assert_eq!(first.shape(), &[1, 3, 4, 5]);
        assert_eq!(first.sum()?.item::<f64>()?, (0..60).sum::<i32>() as f64);
        assert_eq!(x.unfold(1, 2, usize::MAX)?.shape(), &[2, 1, 4, 5, 2]);
        let pooled = F::max_pool2d(&img, 2, isize::MAX as usize)?;
        assert_eq!(pooled.to_vec::<f32>()?, vec![7.0, 43.0]);
        // Pads and crops that no isize sum holds.
        let pad = F::pad(&img, &[isize::MIN, 1], F::PadMode::Constant(0.0));
        assert!(pad.unwrap_err().to_string().starts_with("pad"));
        let pad = F::pad(&img, &[-4, -4], F::PadMode::Constant(0.0));
        assert!(pad.is_err());
        // Convolution arguments whose sizes overflow.
        for args in [
            F::ConvArgs {
                dilation: usize::MAX,
                ..Default::default()
            },
            F::ConvArgs {
                stride: usize::MAX,
                ..Default::default()
            },
            F::ConvArgs {
                padding: isize::MAX as usize,
                ..Default::default()
            },
        ] {
            assert!(
                F::conv_transpose2d(&img, &w, None, args, 0).is_err(),
                "{args:?}"
            );
            assert!(F::unfold(
                &img,
                2,
                2,
                F::ConvArgs {
                    dilation: usize::MAX,
                    ..args
                }
            )
            .is_err());
        }
        let empty_kernel = Tensor::ones_on([2, 2, 0, 3], &dev)?;
        assert!(F::conv_transpose2d(&img, &empty_kernel, None, Default::default(), 0).is_err());
        // An adaptive max pool to 2^31 columns is refused before any work (one op per
        // output cell took memory until the process was killed); a normal one still pools.
        let e = F::adaptive_max_pool2d(&img, (2, 1 << 31)).unwrap_err();
        assert!(e.to_string().starts_with("adaptive_max_pool2d"), "{e}");
        assert_eq!(
            F::adaptive_max_pool2d(&img, (4, 5))?
                .i(s![0, 0, .., ..])?
                .to_vec2::<f32>()?,
            [
                [7.0, 8.0, 9.0, 10.0, 11.0],
                [13.0, 14.0, 15.0, 16.0, 17.0],
                [25.0, 26.0, 27.0, 28.0, 29.0],
                [31.0, 32.0, 33.0, 34.0, 35.0]
            ]
        );
        // Sizes built on the host for a GPU are refused by the device's limit first; a byte
        // count past u64 saturates into the limit check.
        let labels = Tensor::new_on([0i64, 1], &dev)?;
        assert!(F::one_hot(&labels, Some(isize::MAX as usize - 1)).is_err());
        assert!(Tensor::arange_on(0.0, 1e300, 1.0, &dev).is_err());
        // The full i64 range is one randint draw (its span wrapped the subtraction).
        let r = Tensor::randint_on(i64::MIN, i64::MAX, [64], &dev)?.to_vec::<i64>()?;
        assert!(r.iter().any(|&v| v != r[0]));
        let r = Tensor::randint_on(-1, i64::MAX, [64], &dev)?.to_vec::<i64>()?;
        assert!(r.iter().all(|&v| v >= -1));
        // PyTorch's checks on distributions.
        assert!(x.normal_(0.0, -1.0).is_err());
        assert!(x.normal_(0.0, f64::NAN).is_err());
        for (low, high) in [
            (1.5, 1.0),
            (f64::NAN, 1.0),
            (f64::NEG_INFINITY, 1.0),
            (-1e300, 1.0),
        ] {
            assert!(x.uniform_(low, high).is_err(), "uniform_({low}, {high})");
        }
        x.uniform_(-2.0, -2.0)?;
        assert_eq!(x.max()?.item::<f32>()?, -2.0);
    }
    Ok(())
}

/// Layer sizes and gradients at the ends of their types: an `Err` from the constructor or
/// the call, never an overflow panic or a gradient of the wrong kind kept.
#[test]
fn layers_and_gradients_refuse_hostile_arguments() -> Result<()> {
    use wgrad::nn::{self, functional as F};
    use wgrad::DType;
    for dev in common::devices() {
        for n in [1usize << 40, isize::MAX as usize, usize::MAX] {
            assert!(nn::Conv2d::new(1, 1, n, &dev).is_err(), "kernel {n}");
            assert!(nn::Conv2d::new(n, 2, 3, &dev).is_err(), "channels {n}");
            assert!(nn::Recurrent::lstm(2, n, &dev).is_err(), "hidden {n}");
            assert!(nn::Linear::new(n, 2, &dev).is_err(), "features {n}");
        }
        // The class count of the largest label: i64::MAX + 1 classes do not fit.
        let labels = Tensor::new_on([0i64, i64::MAX], &dev)?;
        let e = F::one_hot(&labels, None).unwrap_err();
        assert!(e.to_string().starts_with("one_hot"), "{e}");
        // A gradient or a tangent of another dtype or device is refused (PyTorch too).
        let x = Tensor::ones_on([3], &dev)?.requires_grad_(true)?;
        assert!(x
            .set_grad(Some(Tensor::ones_on([3], &dev)?.to_dtype(DType::F64)?))
            .is_err());
        assert!(x
            .set_grad(Some(Tensor::ones_on([3], &dev)?.to_dtype(DType::I64)?))
            .is_err());
        if !dev.is_cpu() {
            assert!(x.set_grad(Some(Tensor::ones([3])?)).is_err());
        }
        x.set_grad(Some(Tensor::full_on([3], 2.0, &dev)?))?;
        assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![2.0; 3]);
        let int_tangent = Tensor::ones_on([3], &dev)?.to_dtype(DType::I64)?;
        assert!(wgrad::func::make_dual(&x.detach(), &int_tangent).is_err());
    }
    Ok(())
}

/// Integer powers and ranges as PyTorch computes them, on every device.
#[test]
fn integer_pow_and_arange_follow_pytorch() -> Result<()> {
    for dev in common::devices() {
        let on = |t: Tensor| t.to_device(&dev);
        let a = on(Tensor::new([1i64, -1, 2, -1, 3])?)?;
        let b = on(Tensor::new([-1i64, -1, -1, -2, 0])?)?;
        assert_eq!(
            a.pow(&b)?.to_vec::<i64>()?,
            vec![1, -1, 0, 1, 1],
            "on {dev}"
        );
        // The whole 64-bit exponent counts: (-1)^(2^32 + 1) = -1.
        let big = on(Tensor::new([(1i64 << 32) + 1, 1 << 32])?)?;
        let minus_one = on(Tensor::new([-1i64, -1])?)?;
        assert_eq!(
            minus_one.pow(&big)?.to_vec::<i64>()?,
            vec![-1, 1],
            "on {dev}"
        );
        assert!(a.pow_scalar(-1).is_err());
        let inv = a.pow_scalar(-1.0)?.to_vec::<f32>()?;
        for (got, want) in inv.iter().zip([1.0f32, -1.0, 0.5, -1.0, 1.0 / 3.0]) {
            assert!((got - want).abs() < 1e-6, "on {dev}: {got} vs {want}");
        }
        let r = Tensor::arange_on(i64::MAX - 3, i64::MAX, 1, &dev)?;
        assert_eq!(
            r.to_vec::<i64>()?,
            vec![i64::MAX - 3, i64::MAX - 2, i64::MAX - 1]
        );
        let r = Tensor::arange_on((1i64 << 53) + 1, (1i64 << 53) + 4, 1, &dev)?;
        assert_eq!(r.numel(), 3);
        assert_eq!(
            Tensor::arange_on(10i64, 0, -3, &dev)?.to_vec::<i64>()?,
            vec![10, 7, 4, 1]
        );
    }
    Ok(())
}

/// NaN on the GPU is NaN: reductions, comparisons and elementwise ops give the CPU's (and
/// PyTorch's) results on inputs with NaN (WGSL lets a compiler assume `x != x` is false).
#[test]
fn nan_is_nan_on_every_device() -> Result<()> {
    let data = [1.0f32, f32::NAN, 3.0, -2.0, 0.0, f32::NAN];
    type Program = (&'static str, Box<dyn Fn(&Tensor) -> Result<Tensor>>);
    let programs: Vec<Program> = vec![
        ("max", Box::new(|x| x.max())),
        ("min", Box::new(|x| x.min())),
        ("argmax", Box::new(|x| x.argmax())),
        ("argmin", Box::new(|x| x.argmin())),
        (
            "max_dim",
            Box::new(|x| Ok(x.reshape([2, 3])?.max_dim(1, false)?.1)),
        ),
        (
            "amax",
            Box::new(|x| x.reshape([2, 3])?.max_dims([1], false)),
        ),
        ("maximum", Box::new(|x| x.maximum(&x.flip0()?))),
        ("minimum", Box::new(|x| x.minimum(&x.flip0()?))),
        ("relu", Box::new(|x| x.relu())),
        ("sign", Box::new(|x| x.sign())),
        ("to bool", Box::new(|x| x.to_dtype(wgrad::DType::Bool))),
        ("isnan", Box::new(|x| x.isnan())),
        ("eq", Box::new(|x| x.eq(x))),
        ("lt", Box::new(|x| x.lt_scalar(2.0))),
        ("clamp", Box::new(|x| x.clamp(-1.0, 2.0))),
        ("sum", Box::new(|x| x.sum())),
        ("logical_and", Box::new(|x| x.logical_and(x))),
        ("logical_not", Box::new(|x| x.logical_not())),
        (
            "where",
            Box::new(|x| Tensor::where_cond(&x.isnan()?, 0.0, x)),
        ),
        // C's pow: x^0 and 1^y are 1 even for NaN, every other power of or to NaN is NaN.
        ("pow", Box::new(|x| x.pow(&x.flip0()?))),
        ("pow 0", Box::new(|x| x.pow_scalar(0.0))),
        ("pow -3", Box::new(|x| x.pow_scalar(-3))),
        (
            "1 ^ x",
            Box::new(|x| Tensor::ones([6])?.to_device(x.device())?.pow(x)),
        ),
    ];
    for dev in common::devices().into_iter().filter(|d| !d.is_cpu()) {
        let cpu = Tensor::new(data)?;
        let gpu = cpu.to_device(&dev)?;
        for (name, f) in &programs {
            let (a, b) = (f(&cpu)?, f(&gpu)?.to_device(&wgrad::Device::Cpu)?);
            assert_eq!(format!("{a}"), format!("{b}"), "{name} on {dev}");
        }
    }
    Ok(())
}

/// Small powers are exact (as C's pow gives them on the CPU), and remainders are C's exact
/// fmod with the divisor's sign, a zero one with the dividend's (PyTorch's remainder): the
/// GPU's results are the CPU's bits.
#[test]
fn powers_and_remainders_match_the_cpu_bit_for_bit() -> Result<()> {
    // The last four: ratios past 2^24, where a - b * trunc(a / b) loses every digit.
    let a = Tensor::new([
        3.0f32, 5.0, 7.0, 10.0, -1.5, 0.1, -1.0, 1.0, -0.0, 2.0, -1e30, 1e30, 3e38, 16777217.0,
    ])?;
    let b = Tensor::new([
        1.0f32, 2.0, -1.0, 0.5, 2.0, 1.0, 1.0, -1.0, 1.0, -1.0, -3.0, 7.0, 1e-3, 3.0,
    ])?;
    for dev in common::devices().into_iter().filter(|d| !d.is_cpu()) {
        let (ga, gb) = (a.to_device(&dev)?, b.to_device(&dev)?);
        for (name, cpu, gpu) in [
            (
                "pow",
                a.narrow(0, 0, 10)?.pow(&b.narrow(0, 0, 10)?)?,
                ga.narrow(0, 0, 10)?.pow(&gb.narrow(0, 0, 10)?)?,
            ),
            ("remainder", a.remainder(&b)?, ga.remainder(&gb)?),
        ] {
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.to_device(&wgrad::Device::Cpu)?
                    .to_vec::<f32>()?
                    .iter()
                    .map(|v| v.to_bits())
                    .collect())
            };
            assert_eq!(bits(&gpu)?, bits(&cpu)?, "{name} on {dev}: {gpu} vs {cpu}");
        }
    }
    Ok(())
}

trait Flip {
    fn flip0(&self) -> Result<Tensor>;
}

impl Flip for Tensor {
    /// The elements in reverse order (a copy through index_select).
    fn flip0(&self) -> Result<Tensor> {
        let n = self.numel() as i64;
        let idx = Tensor::arange_on(n - 1, -1i64, -1, self.device())?;
        self.index_select(0, &idx)
    }
}

/// Arguments the math has no meaning for are errors, not a panic or NaN forever after.
#[test]
fn bad_arguments_are_errors() -> Result<()> {
    use wgrad::optim::{Adagrad, Adam, Optimizer, RmsProp, Sgd};
    let p = || Tensor::ones([2]).unwrap().requires_grad_(true).unwrap();
    let with_grad = |t: Tensor| {
        t.set_grad(Some(Tensor::ones([2]).unwrap())).unwrap();
        t
    };
    type Step = (&'static str, Box<dyn FnMut() -> Result<()>>);
    let steps: Vec<Step> = vec![
        ("sgd lr -1", {
            let mut o = Sgd::new(vec![with_grad(p())], -1.0);
            Box::new(move || o.step())
        }),
        ("sgd lr NaN", {
            let mut o = Sgd::new(vec![with_grad(p())], f64::NAN);
            Box::new(move || o.step())
        }),
        ("adam beta 1", {
            let mut o = Adam::new(vec![with_grad(p())], 0.1).betas(1.0, 0.999);
            Box::new(move || o.step())
        }),
        ("adam beta -0.1", {
            let mut o = Adam::new(vec![with_grad(p())], 0.1).betas(0.9, -0.1);
            Box::new(move || o.step())
        }),
        ("rmsprop lr inf", {
            let mut o = RmsProp::new(vec![with_grad(p())], f64::INFINITY);
            Box::new(move || o.step())
        }),
        ("adagrad lr -0.5", {
            let mut o = Adagrad::new(vec![with_grad(p())], -0.5);
            Box::new(move || o.step())
        }),
    ];
    for (name, mut step) in steps {
        assert!(step().is_err(), "{name}");
    }
    let x = Tensor::ones([3])?;
    assert!(wgrad::nn::HuberLoss::new()
        .delta(f64::NAN)
        .forward(&x, &x)
        .is_err());
    let ds = wgrad::data::TensorDataset::new(Tensor::zeros([6, 2])?, Tensor::zeros([6])?)?;
    assert!(ds.range(5, 2).is_err());
    use wgrad::data::Dataset;
    assert!(ds.get(&[usize::MAX]).is_err());
    assert!(ds.get(&[6]).is_err());
    assert_eq!(ds.get(&[5, 0])?.0.shape(), &[2, 2]);
    // Files: a repeated name or the header's key cannot be saved, and a failed save leaves
    // the previous file whole.
    let dir = std::env::temp_dir().join(format!("wgrad-reliability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    wgrad::io::save(&path, &[("a".into(), x.clone())])?;
    assert!(wgrad::io::save(&path, &[("a".into(), x.clone()), ("a".into(), x.clone())]).is_err());
    assert!(wgrad::io::save(&path, &[("__metadata__".into(), x.clone())]).is_err());
    let back = wgrad::io::load(&path)?;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1.to_vec::<f32>()?, vec![1.0; 3]);
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 1, "no partial file is left behind");
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

/// BatchNorm refuses a batch whose statistics would be NaN, as PyTorch does; a [3, 0]
/// matrix reads back as three empty rows.
#[test]
fn batch_norm_and_empty_rows() -> Result<()> {
    use wgrad::nn::{BatchNorm1d, Forward};
    for dev in common::devices() {
        let bn = BatchNorm1d::new(3, &dev)?;
        assert!(
            bn.forward(&Tensor::zeros([1, 3])?.to_device(&dev)?)
                .is_err(),
            "batch of one"
        );
        assert!(
            bn.forward(&Tensor::zeros([0, 3])?.to_device(&dev)?)
                .is_err(),
            "empty batch"
        );
        // The running statistics are untouched by the refused batches.
        bn.forward(&Tensor::new([[1.0f32, 2.0, 3.0], [3.0, 2.0, 1.0]])?.to_device(&dev)?)?;
        let stats = [bn.running_mean.clone(), bn.running_var.clone()];
        assert_eq!(
            bn.num_batches_tracked.item::<i64>()?,
            1,
            "one batch counted"
        );
        assert!(stats
            .iter()
            .all(|t| t.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite())));
        let rows = Tensor::zeros([3, 0])?.to_device(&dev)?.to_vec2::<f32>()?;
        assert_eq!(rows, vec![Vec::<f32>::new(); 3]);
    }
    Ok(())
}

/// Files: a CSV "-nan" is a missing value, an empty CSV is an Err, and the digits loader
/// reads every gzip member and refuses labels and pixels out of range.
#[test]
fn file_loaders_refuse_bad_data() -> Result<()> {
    use std::io::Write;
    let t = wgrad::data::Table::parse_csv("a\n1\n-nan\n3\n", "t.csv")?
        .fill_na_mean()
        .to_tensor()?;
    assert_eq!(t.to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
    assert!(wgrad::data::Table::parse_csv("a,b\n", "empty.csv").is_err());
    let ragged = wgrad::data::Table {
        names: vec!["a".into(), "b".into()],
        columns: vec![
            wgrad::data::Column::Numeric(vec![Some(1.0)]),
            wgrad::data::Column::Numeric(vec![Some(1.0), Some(2.0)]),
        ],
    };
    assert!(ragged.to_tensor().is_err());
    let dir = std::env::temp_dir().join(format!("wgrad-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gz = |name: &str, members: &[&str]| {
        let path = dir.join(name);
        let mut bytes = Vec::new();
        for m in members {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(m.as_bytes()).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let row = |label: &str| format!("{}{label}\n", "1,".repeat(64));
    let two = gz("two.csv.gz", &[&row("3"), &row("7")]);
    let (x, y) = wgrad::data::load_digits(&two)?;
    assert_eq!(
        (x.shape(), y.to_vec::<i64>()?),
        (&[2usize, 64][..], vec![3, 7])
    );
    for bad in ["NaN", "3.7", "inf", "-1", "10"] {
        let path = gz("bad.csv.gz", &[&row(bad)]);
        assert!(wgrad::data::load_digits(&path).is_err(), "label {bad}");
    }
    let nan_pixel = gz("pixel.csv.gz", &[&format!("NaN,{}0\n", "1,".repeat(63))]);
    assert!(wgrad::data::load_digits(&nan_pixel).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}

/// Rust numbers past the range of the tensor's dtype are an Err, not a wrap.
#[test]
fn numbers_out_of_range_are_errors() -> Result<()> {
    let e = Tensor::new([usize::MAX]).unwrap_err();
    assert!(e.to_string().contains("18446744073709551615"), "{e}");
    let i = Tensor::new([1i64, 2])?;
    assert!(i.add_scalar(usize::MAX).is_err());
    assert!(
        (&i * u64::MAX as i64).check().is_ok(),
        "i64 literals stay in range"
    );
    assert_eq!(i.add_scalar(3usize)?.to_vec::<i64>()?, vec![4, 5]);
    // A float tensor takes any number.
    assert!(Tensor::new([1.0f32])?.add_scalar(usize::MAX).is_ok());
    // Conv arithmetic on absurd padding is an Err, not a wrapped size.
    let x = Tensor::zeros([1, 1, 4, 4])?;
    let w = Tensor::zeros([1, 1, 3, 3])?;
    assert!(wgrad::nn::functional::conv2d(
        &x,
        &w,
        None,
        wgrad::nn::functional::ConvArgs {
            padding: usize::MAX / 2,
            ..Default::default()
        }
    )
    .is_err());
    // An output too large for memory is an Err naming the op, not an abort.
    let e = wgrad::nn::functional::conv2d(
        &x,
        &w,
        None,
        wgrad::nn::functional::ConvArgs {
            padding: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("conv2d"), "{e}");
    Ok(())
}

/// A second backward pass through a graph is an error unless the first retained it (it
/// silently accumulated before); ops that save nothing may be passed again, as in PyTorch.
#[test]
fn a_second_backward_needs_retain_graph() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::new([1.0f32, 2.0])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let y = x.mul(&x)?.sum()?;
        y.backward()?;
        let e = y.backward().unwrap_err();
        assert!(e.to_string().contains("second time"), "{e}");
        assert_eq!(
            x.grad().unwrap().to_vec::<f32>()?,
            vec![2.0, 4.0],
            "no accumulation"
        );
        x.zero_grad();
        let y = x.mul(&x)?.sum()?;
        y.backward_with_options(None, true, false)?;
        y.backward()?;
        assert_eq!(
            x.grad().unwrap().to_vec::<f32>()?,
            vec![4.0, 8.0],
            "retained, twice"
        );
        assert!(y.backward().is_err());
        // An add saves nothing: passing it twice is allowed (PyTorch too).
        x.zero_grad();
        let z = x.add_scalar(1.0)?.sum()?;
        z.backward()?;
        z.backward()?;
        assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![2.0, 2.0]);
    }
    Ok(())
}

/// An out-of-range index on a GPU is reported by the readbacks of the result it spoiled and
/// of everything computed from it, and by no other readback, on any thread.
#[test]
fn gpu_index_errors_land_on_their_results() -> Result<()> {
    for dev in common::devices().into_iter().filter(|d| !d.is_cpu()) {
        let x = Tensor::new([[1.0f32, 2.0], [3.0, 4.0]])?.to_device(&dev)?;
        let bad = x.index_select(0, &Tensor::new([5i64])?.to_device(&dev)?)?;
        let downstream = bad.exp()?.sum()?;
        let good = x.add_scalar(1.0)?;
        assert_eq!(good.to_vec2::<f32>()?, vec![vec![2.0, 3.0], vec![4.0, 5.0]]);
        let other = x.clone();
        std::thread::spawn(move || other.sum().unwrap().item::<f32>().unwrap())
            .join()
            .unwrap();
        let e = bad.to_vec2::<f32>().unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(
            downstream.item::<f32>().is_err(),
            "a result computed from it"
        );
        assert!(bad.contiguous()?.to_vec2::<f32>().is_err(), "a copy of it");
        assert!(bad.to_vec2::<f32>().is_err(), "every readback of it");
        // In place: a tensor that received its values is spoiled too.
        let target = Tensor::zeros([1, 2])?.to_device(&dev)?;
        target.copy_(&bad)?;
        assert!(target.to_vec2::<f32>().is_err());
        assert_eq!(x.sum()?.item::<f64>()?, 10.0);
    }
    Ok(())
}

/// The sequence-model ops under hostile arguments: sizes whose host-side index lists or
/// weight matrices cannot exist are `Err(OutOfMemory)` or a size error (not an abort), 0-d
/// tensors roll, flip, sort and gather as one element, and an empty batch normalises.
#[test]
fn sequence_ops_refuse_hostile_arguments() -> Result<()> {
    use wgrad::nn::functional as F;
    let x = Tensor::randn([2, 3])?;
    let line = Tensor::randn([1, 1, 3])?;
    let image = Tensor::randn([1, 1, 3, 3])?;
    let refused: Vec<(&str, Result<Tensor>)> = vec![
        ("repeat", x.repeat([isize::MAX, 1])),
        ("repeat_interleave", x.repeat_interleave(usize::MAX, 0)),
        ("tile", x.tile([1isize << 40, 1isize << 40])),
        (
            "pad",
            F::pad(&x, &[0, isize::MAX / 2], F::PadMode::Constant(0.0)),
        ),
        (
            "pad circular",
            F::pad(&x, &[isize::MAX, 0], F::PadMode::Circular),
        ),
        (
            "interpolate linear",
            F::interpolate(
                &line,
                &[1 << 40],
                F::Interpolation::Linear {
                    align_corners: false,
                },
            ),
        ),
        (
            "interpolate nearest",
            F::interpolate(&line, &[1 << 40], F::Interpolation::Nearest),
        ),
        (
            "adaptive_avg_pool2d",
            F::adaptive_avg_pool2d(&image, (1 << 40, 2)),
        ),
        ("one_hot", F::one_hot(&Tensor::new([0i64])?, Some(1 << 50))),
        (
            "multinomial",
            Tensor::new([0.5f32, 0.5])?.multinomial(1 << 50, true),
        ),
        ("einsum", Tensor::einsum("ij,jk->ik", &[&x, &x])),
        ("einsum ellipsis", Tensor::einsum("...i->i", &[&x])),
        (
            "conv_transpose2d stride 0",
            F::conv_transpose2d(
                &image,
                &Tensor::randn([1, 1, 3, 3])?,
                None,
                F::ConvArgs {
                    stride: 0,
                    ..Default::default()
                },
                0,
            ),
        ),
        (
            "conv1d dilation",
            F::conv1d(
                &line,
                &Tensor::randn([1, 1, 3])?,
                None,
                F::ConvArgs {
                    dilation: usize::MAX,
                    ..Default::default()
                },
            ),
        ),
    ];
    for (what, r) in refused {
        assert!(r.is_err(), "{what}: {:?}", r.map(|t| t.shape().to_vec()));
    }
    let s = Tensor::scalar(2.5)?;
    assert_eq!(s.roll([1], [0])?.item::<f32>()?, 2.5);
    assert_eq!(s.flip([0])?.item::<f32>()?, 2.5);
    assert_eq!(s.topk(1, 0, true)?.0.item::<f32>()?, 2.5);
    assert_eq!(s.gather(0, &Tensor::scalar(0)?)?.item::<f32>()?, 2.5);
    assert!(
        s.gather(0, &Tensor::scalar(1)?).is_err(),
        "index 1 of one element"
    );
    assert_eq!(s.repeat_interleave(3, 0)?.to_vec::<f32>()?, vec![2.5; 3]);
    assert_eq!(
        F::group_norm(&Tensor::zeros([0, 4])?, 2, None, None, 1e-5)?.shape(),
        &[0, 4]
    );
    Ok(())
}

/// An empty view may start past the end of its (empty) buffer: `zeros([0, 4])` narrowed to
/// columns 2..4 and flattened is contiguous, has no elements and offset 2. Every dtype's
/// conversions and copies take it.
#[test]
fn empty_views_past_the_end_of_their_buffer() -> Result<()> {
    for dev in common::devices() {
        for d in wgrad::DType::ALL {
            let e = Tensor::zeros_on([0, 4], (d, &dev))?
                .narrow(1, 2, 2)?
                .reshape([0])?;
            assert_eq!(e.storage_offset(), 2);
            for to in wgrad::DType::ALL {
                assert_eq!(e.to_dtype(to)?.shape(), &[0], "{d:?} -> {to:?} on {dev}");
            }
            assert_eq!(e.contiguous()?.numel(), 0);
            assert_eq!(e.to_device(&wgrad::Device::Cpu)?.numel(), 0);
        }
    }
    Ok(())
}

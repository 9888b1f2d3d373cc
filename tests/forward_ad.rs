//! Forward-mode differentiation (dual tensors, `func::jvp`) and the function transforms
//! (`vjp`, `grad`, `jacrev`, `jacfwd`, `hessian`, `hvp`), on every device. PyTorch's own
//! forward-mode values are checked by the golden runner (`tests/golden.rs`, the `jvp` of
//! every case that has tangents); here every primitive is checked against reverse mode,
//! which the golden cases pin down: `<g, J t>` must equal `<J^T g, t>`.

mod common;

use wgrad::op::{BinaryOp, UnaryOp};
use wgrad::{func, s, Device, Generator, Result, Tensor};

type Program = (
    String,
    Vec<Vec<usize>>,
    Box<dyn Fn(&[Tensor]) -> Result<Tensor>>,
);

fn program(
    name: &str,
    shapes: &[&[usize]],
    f: impl Fn(&[Tensor]) -> Result<Tensor> + 'static,
) -> Program {
    (
        name.to_string(),
        shapes.iter().map(|s| s.to_vec()).collect(),
        Box::new(f),
    )
}

/// Programs that reach every primitive's forward rule: every op of the tables (with tensors
/// and numbers), where, the reductions, scans, matmul, every view, cat, the index ops, and
/// (through forward over reverse) the adjoints that backward passes use.
fn programs() -> Vec<Program> {
    let mut v = Vec::new();
    for &op in UnaryOp::ALL {
        v.push(program(op.name(), &[&[3, 4]], move |x| x[0].unary_op(op)));
    }
    for &op in BinaryOp::ALL {
        v.push(program(op.name(), &[&[3, 4], &[4]], move |x| {
            Tensor::binary_op(op, &x[0], &x[1])
        }));
        v.push(program(
            &format!("{}(x, 0.5)", op.name()),
            &[&[5]],
            move |x| Tensor::binary_op(op, &x[0], 0.5),
        ));
        v.push(program(
            &format!("{}(1.5, x)", op.name()),
            &[&[5]],
            move |x| Tensor::binary_op(op, 1.5, &x[0]),
        ));
    }
    v.extend([
        program("where", &[&[3, 4], &[4]], |x| {
            Tensor::where_cond(&x[0].gt_scalar(0.0)?, &x[0], &x[1])
        }),
        program("where(c, x, 0)", &[&[6]], |x| {
            Tensor::where_cond(&x[0].lt_scalar(0.2)?, &x[0], 0.0)
        }),
        program("masked_fill", &[&[6]], |x| {
            x[0].masked_fill(&x[0].gt_scalar(0.3)?, -1.0)
        }),
        program("sum_dims", &[&[3, 4]], |x| x[0].sum_dims([1], true)),
        program("mean", &[&[3, 4]], |x| x[0].mean()),
        program("prod_dims", &[&[3, 4]], |x| x[0].prod_dims([0], false)),
        program("max_dims", &[&[3, 4]], |x| x[0].max_dims([1], false)),
        program("min", &[&[3, 4]], |x| x[0].min()),
        program("cumsum", &[&[3, 4]], |x| x[0].cumsum(1)),
        program("softmax", &[&[3, 4]], |x| x[0].softmax(-1)),
        program("log_softmax", &[&[3, 4]], |x| x[0].log_softmax(0)),
        program("logsumexp", &[&[3, 4]], |x| x[0].logsumexp([1], false)),
        program("matmul", &[&[3, 4], &[4, 2]], |x| x[0].matmul(&x[1])),
        program("batched matmul", &[&[2, 3, 4], &[4, 5]], |x| {
            x[0].matmul(&x[1])
        }),
        program("x @ w.T", &[&[3, 4], &[5, 4]], |x| x[0].matmul(&x[1].t()?)),
        program("reshape", &[&[3, 4]], |x| x[0].reshape([2, 6])),
        program("permute", &[&[2, 3, 4]], |x| x[0].permute([2, 0, 1])),
        program("slice", &[&[5, 4]], |x| x[0].i(s![1..5;2, ..3])),
        program("select", &[&[3, 4]], |x| x[0].select(1, -1)),
        program("expand", &[&[3, 1]], |x| x[0].expand([3, 4])),
        program("to_device", &[&[3]], |x| x[0].to_device(&Device::Cpu)),
        program("cat", &[&[3, 4], &[3, 2]], |x| {
            Tensor::cat(&[&x[0], &x[1]], 1)
        }),
        program("stack", &[&[3], &[3]], |x| {
            Tensor::stack(&[&x[0], &x[1]], 0)
        }),
        program("index_select", &[&[4, 3]], |x| {
            x[0].index_select(0, &Tensor::new([3i64, 0, 3])?.to_device(x[0].device())?)
        }),
        program("gather", &[&[3, 4]], |x| {
            let idx = Tensor::new([[0i64, 3], [1, 1], [2, 0]])?.to_device(x[0].device())?;
            x[0].gather(1, &idx)
        }),
        program("scatter_add", &[&[3, 4], &[3, 2]], |x| {
            let idx = Tensor::new([[0i64, 3], [1, 1], [2, 0]])?.to_device(x[0].device())?;
            x[0].scatter_add(1, &idx, &x[1])
        }),
        // The gradient of a slice is an embedding into zeros: its forward rule runs here.
        program("grad of a slice (forward over reverse)", &[&[5, 4]], |x| {
            func::grad(|y: &[Tensor]| y[0].i(s![1..4, 1..])?.square()?.sum())(&x[..1])
        }),
        program("composition", &[&[4], &[4]], |x| {
            (&(&x[0].sin()? * &x[1]) + 1.0).log()?.mul(&x[0].exp()?)
        }),
    ]);
    v
}

fn randn(shape: &[usize], g: &mut Generator, dev: &Device) -> Tensor {
    Tensor::randn_with(shape.to_vec(), g)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.mul(b).unwrap().sum().unwrap().item::<f64>().unwrap()
}

#[test]
fn every_primitive_agrees_with_reverse_mode() {
    let mut g = Generator::new(11);
    let mut failures = Vec::new();
    for dev in common::devices() {
        for (name, shapes, f) in programs() {
            // Inputs away from the kinks and the poles of the ops (log, sqrt, reciprocal).
            let xs: Vec<Tensor> = shapes
                .iter()
                .map(|s| {
                    randn(s, &mut g, &dev)
                        .abs()
                        .unwrap()
                        .add_scalar(0.5)
                        .unwrap()
                })
                .collect();
            let ts: Vec<Tensor> = shapes.iter().map(|s| randn(s, &mut g, &dev)).collect();
            let (y, jvp) = match func::jvp(&f, &xs, &ts) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{name} on {dev}: jvp: {e}"));
                    continue;
                }
            };
            let cot = randn(y.shape(), &mut g, y.device());
            let (_, pullback) = func::vjp(&f, &xs).unwrap();
            let grads = pullback(&cot).unwrap();
            let lhs = dot(&cot, &jvp);
            let rhs: f64 = grads.iter().zip(&ts).map(|(d, t)| dot(d, t)).sum();
            if (lhs - rhs).abs() > 1e-3 * lhs.abs().max(rhs.abs()).max(1.0) {
                failures.push(format!(
                    "{name} on {dev}: <g, J t> = {lhs}, <J^T g, t> = {rhs}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn jacfwd_equals_jacrev_on_random_compositions() -> Result<()> {
    let mut g = Generator::new(5);
    let unary = [
        UnaryOp::Sin,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Sigmoid,
        UnaryOp::Square,
    ];
    let binary = [
        BinaryOp::Mul,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Maximum,
    ];
    for dev in common::devices() {
        for trial in 0..6 {
            // A random chain of ops mixing the input with a fixed weight.
            let ops: Vec<(UnaryOp, BinaryOp)> = (0..4)
                .map(|k| {
                    (
                        unary[(trial * 3 + k) % unary.len()],
                        binary[(trial + k * 5) % binary.len()],
                    )
                })
                .collect();
            let w = randn(&[3], &mut g, &dev);
            let f = move |x: &[Tensor]| -> Result<Tensor> {
                let mut y = x[0].clone();
                for &(u, b) in &ops {
                    y = Tensor::binary_op(b, &y.unary_op(u)?, &w)?;
                }
                y.matmul(&x[0].t()?)
            };
            let x = randn(&[2, 3], &mut g, &dev).mul_scalar(0.5)?;
            let (jf, jr) = (
                func::jacfwd(&f)(std::slice::from_ref(&x))?,
                func::jacrev(&f)(&[x])?,
            );
            assert_eq!(jf.shape(), &[2, 2, 2, 3]);
            assert_eq!(jf.shape(), jr.shape());
            let (a, b) = (jf.to_vec::<f32>()?, jr.to_vec::<f32>()?);
            for (p, q) in a.iter().zip(&b) {
                assert!(
                    (p - q).abs() <= 1e-4 * p.abs().max(1.0),
                    "trial {trial} on {dev}: {p} vs {q}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn hessians_of_known_functions() -> Result<()> {
    for dev in common::devices() {
        // x^T A x has Hessian A + A^T.
        let a = Tensor::new([[1.0f32, 2.0, 0.0], [0.5, -1.0, 3.0], [4.0, 0.0, 2.0]])?
            .to_device(&dev)?;
        let quad = {
            let a = a.clone();
            move |x: &[Tensor]| x[0].dot(&a.mv(&x[0])?)
        };
        let x = Tensor::new([0.3f32, -1.2, 2.0])?.to_device(&dev)?;
        let h = func::hessian(&quad)(std::slice::from_ref(&x))?;
        let expected = a.add(&a.t()?)?;
        assert_eq!(h.to_vec2::<f32>()?, expected.to_vec2::<f32>()?, "on {dev}");
        // sum(x^3) has Hessian diag(6x).
        let cube = |x: &[Tensor]| x[0].pow_scalar(3.0)?.sum();
        let h = func::hessian(cube)(std::slice::from_ref(&x))?.to_vec2::<f32>()?;
        let xs = x.to_vec::<f32>()?;
        for (i, row) in h.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let want = if i == j { 6.0 * xs[i] } else { 0.0 };
                assert!(
                    (v - want).abs() < 1e-4,
                    "on {dev}: H[{i}][{j}] = {v}, want {want}"
                );
            }
        }
        // hvp equals the Hessian times v, without forming it.
        let v = Tensor::new([1.0f32, 0.5, -2.0])?.to_device(&dev)?;
        let (value, hv) = func::hvp(&quad, std::slice::from_ref(&x), &v)?;
        assert!(
            (value.item::<f64>()? - quad(std::slice::from_ref(&x))?.item::<f64>()?).abs() < 1e-5
        );
        let want = expected.mv(&v)?.to_vec::<f32>()?;
        for (p, q) in hv.to_vec::<f32>()?.iter().zip(&want) {
            assert!((p - q).abs() < 1e-4, "hvp on {dev}: {p} vs {q}");
        }
        // grad of a scalar function, and of one that ignores its argument (0).
        let dx = func::grad(cube)(std::slice::from_ref(&x))?.to_vec::<f32>()?;
        for (d, xi) in dx.iter().zip(&xs) {
            assert!((d - 3.0 * xi * xi).abs() < 1e-4);
        }
        let zero = func::grad(|_: &[Tensor]| Tensor::scalar(2.0))(std::slice::from_ref(&x))?;
        assert_eq!(zero.to_vec::<f32>()?, vec![0.0; 3]);
    }
    Ok(())
}

#[test]
fn duals_behave_as_pytorchs() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::new([1.0f32, 2.0])?.to_device(&dev)?;
        let t = Tensor::new([1.0f32, -1.0])?.to_device(&dev)?;
        // Forward mode ignores no_grad, as PyTorch's does; a detached value is a constant.
        let (_, d) = func::jvp(
            |xs: &[Tensor]| {
                let _g = wgrad::no_grad();
                xs[0].square()?.add(&xs[0].detach().exp()?)
            },
            std::slice::from_ref(&x),
            std::slice::from_ref(&t),
        )?;
        assert_eq!(d.to_vec::<f32>()?, vec![2.0, -4.0]);
        // The primal and the tangent of a dual, and gradients through a dual to its primal.
        let p = x.clone().requires_grad_(true)?;
        let dual = func::make_dual(&p, &t)?;
        let y = dual.mul(&dual)?;
        assert_eq!(y.tangent().unwrap().to_vec::<f32>()?, vec![2.0, -4.0]);
        y.sum()?.backward()?;
        assert_eq!(p.grad().unwrap().to_vec::<f32>()?, vec![2.0, 4.0]);
        let (primal, tangent) = func::unpack_dual(&y)?;
        assert!(primal.tangent().is_none());
        assert_eq!(tangent.unwrap().shape(), &[2]);
        // Forward mode does not nest; in-place ops on duals are refused.
        let e =
            func::jacfwd(func::jacfwd(|x: &[Tensor]| x[0].sin()?.sum()))(std::slice::from_ref(&x))
                .unwrap_err();
        assert!(e.to_string().contains("forward mode does not nest"), "{e}");
        assert!(func::make_dual(&x, &t)?.mul_(2.0).is_err());
        assert!(func::make_dual(&x, &Tensor::new([1.0f32])?.to_device(&dev)?).is_err());
        assert!(func::jvp(
            |x: &[Tensor]| Ok(x[0].clone()),
            std::slice::from_ref(&x),
            &[]
        )
        .is_err());
    }
    Ok(())
}

/// Forward mode keeps no graph: a chain of 2,000 ops needs no more memory than one of 20.
#[test]
fn forward_mode_memory_does_not_grow_with_the_chain() -> Result<()> {
    let x = Tensor::randn([4096])?;
    let t = Tensor::randn([4096])?;
    let peak = |n: usize| -> Result<u64> {
        Device::Cpu.reset_peak_memory_stats();
        let before = Device::Cpu.memory_stats().live_bytes;
        func::jvp(
            |xs: &[Tensor]| {
                let mut y = xs[0].clone();
                for _ in 0..n {
                    y = y.sin()?;
                }
                Ok(y)
            },
            std::slice::from_ref(&x),
            std::slice::from_ref(&t),
        )?;
        Ok(Device::Cpu.memory_stats().peak_bytes - before)
    };
    let (short, long) = (peak(20)?, peak(2000)?);
    assert!(
        long <= short + 4 * 4096 * 4,
        "20 ops peak at {short} bytes, 2000 at {long}"
    );
    // Reverse mode keeps the intermediates: the same chain with a graph grows.
    let xr = x.clone().requires_grad_(true)?;
    Device::Cpu.reset_peak_memory_stats();
    let before = Device::Cpu.memory_stats().live_bytes;
    let mut y = xr.clone();
    for _ in 0..200 {
        y = y.sin()?;
    }
    assert!(Device::Cpu.memory_stats().peak_bytes - before > 100 * 4096 * 4);
    Ok(())
}

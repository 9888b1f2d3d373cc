//! Autograd: the seed's examples, gradcheck of every differentiable op (random shapes,
//! broadcast and non-contiguous inputs), higher-order gradients, safety checks and memory.

mod common;

use wgrad::{gradcheck, s, DType, Error, Generator, GradcheckOptions, Result, Tensor};

fn show(t: &Tensor) -> String {
    t.to_string()
}

#[test]
fn seed_two_dot_x_x() {
    let x = Tensor::arange(0.0, 4.0, 1.0).unwrap();
    assert_eq!(show(&x), "tensor([0., 1., 2., 3.])");
    let x = x.requires_grad_(true).unwrap();
    assert_eq!(show(&x), "tensor([0., 1., 2., 3.], requires_grad=True)");
    let y = 2.0 * &x.dot(&x).unwrap();
    assert_eq!(show(&y), "tensor(28., grad_fn=<MulBackward0>)");
    y.backward().unwrap();
    assert_eq!(show(&x.grad().unwrap()), "tensor([ 0.,  4.,  8., 12.])");
    // Gradients accumulate.
    let y = x.sum().unwrap();
    y.backward().unwrap();
    assert_eq!(show(&x.grad().unwrap()), "tensor([ 1.,  5.,  9., 13.])");
    // ... until zeroed.
    x.grad().unwrap().zero_().unwrap();
    assert_eq!(show(&x.grad().unwrap()), "tensor([0., 0., 0., 0.])");
    x.sum().unwrap().backward().unwrap();
    assert_eq!(show(&x.grad().unwrap()), "tensor([1., 1., 1., 1.])");
}

#[test]
fn seed_non_scalar_backward() {
    let x = Tensor::arange(0.0, 4.0, 1.0)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x.mul(&x).unwrap();
    y.sum().unwrap().backward().unwrap();
    assert_eq!(show(&x.grad().unwrap()), "tensor([0., 2., 4., 6.])");
    x.zero_grad();
    let y = x.mul(&x).unwrap();
    y.backward_with(&Tensor::ones([4]).unwrap()).unwrap();
    assert_eq!(show(&x.grad().unwrap()), "tensor([0., 2., 4., 6.])");
}

#[test]
fn seed_detach() {
    let x = Tensor::arange(1.0, 10.0, 2.0)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    assert_eq!(show(&x), "tensor([1., 3., 5., 7., 9.], requires_grad=True)");
    let y = x.mul(&x).unwrap();
    let z = y.mul(&x).unwrap();
    z.backward_with(&Tensor::ones([5]).unwrap()).unwrap();
    assert_eq!(
        show(&x.grad().unwrap()),
        "tensor([  3.,  27.,  75., 147., 243.])"
    );

    x.zero_grad();
    let y = x.mul(&x).unwrap();
    let u = y.detach();
    let z = u.mul(&x).unwrap();
    z.backward_with(&Tensor::ones([5]).unwrap()).unwrap();
    assert_eq!(
        show(&x.grad().unwrap()),
        "tensor([ 1.,  9., 25., 49., 81.])"
    );
    assert!(!u.requires_grad());
}

fn control_flow(a: &Tensor) -> Result<Tensor> {
    let mut b = a.mul_scalar(2.0)?;
    while b.norm()?.item::<f64>()? < 1000.0 {
        b = b.mul_scalar(2.0)?;
    }
    if b.sum()?.item::<f64>()? > 0.0 {
        Ok(b)
    } else {
        b.mul_scalar(100.0)
    }
}

#[test]
fn seed_control_flow() {
    for seed in 0..5 {
        let mut g = Generator::new(seed);
        let a = Tensor::randn_with([0usize; 0], &mut g)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let d = control_flow(&a).unwrap();
        d.backward().unwrap();
        let lhs = a.grad().unwrap();
        let rhs = d.div(&a).unwrap();
        if a.item::<f64>().unwrap() > 0.0 {
            // d = a * 2^k exactly, so the comparison is exact, as printed in the notes.
            assert_eq!(show(&lhs.eq(&rhs).unwrap()), "tensor(True)", "seed {seed}");
        } else {
            // d = 100 * a * 2^k: the product with 100 rounds, in PyTorch as here.
            let (l, r) = (lhs.item::<f64>().unwrap(), rhs.item::<f64>().unwrap());
            assert!((l - r).abs() <= 1e-6 * l.abs(), "seed {seed}: {l} vs {r}");
        }
    }
}

#[test]
fn no_grad_and_requires_grad_propagation() {
    let x = Tensor::ones([2]).unwrap().requires_grad_(true).unwrap();
    let c = Tensor::ones([2]).unwrap();
    assert!(x.add(&c).unwrap().requires_grad());
    assert!(!c.mul(&c).unwrap().requires_grad());
    {
        let _g = wgrad::no_grad();
        let y = x.mul_scalar(3.0).unwrap();
        assert!(!y.requires_grad() && y.grad_fn_name().is_none());
        // In-place on a leaf is allowed under no_grad (an optimizer step).
        x.sub_(Tensor::ones([2]).unwrap()).unwrap();
    }
    assert_eq!(x.to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
    assert!(wgrad::no_grad_scope(|| x.exp().unwrap())
        .grad_fn_name()
        .is_none());
    // Integer results never require grad.
    assert!(!x.argmax().unwrap().requires_grad());
    assert!(!x.gt_scalar(0.0).unwrap().requires_grad());
}

#[test]
fn shared_subgraph_gets_summed_gradients() {
    // y is used three times; x reaches z along several paths.
    let x = Tensor::new([1.0f32, 2.0, -3.0])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x.mul_scalar(2.0).unwrap();
    let z = y
        .add(y.mul(&y).unwrap())
        .unwrap()
        .add(y.exp().unwrap())
        .unwrap()
        .sum()
        .unwrap();
    z.backward().unwrap();
    // dz/dx = 2 * (1 + 2y + e^y)
    let expected: Vec<f64> = [1.0f64, 2.0, -3.0]
        .iter()
        .map(|&v| 2.0 * (1.0 + 4.0 * v + (2.0 * v).exp()))
        .collect();
    common::assert_close(
        &x.grad().unwrap().to_vec::<f32>().unwrap(),
        &expected,
        1e-5,
        1e-5,
        "diamond",
    );
}

#[test]
fn second_derivative_of_cube() {
    let x = Tensor::new([1.0f32, -2.0, 0.5])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = x.pow_scalar(3.0).unwrap().sum().unwrap();
    let dx = wgrad::grad(&y, &[&x], true).unwrap().remove(0);
    assert!(dx.requires_grad(), "the first derivative carries a graph");
    common::assert_close(
        &dx.to_vec::<f32>().unwrap(),
        &[3.0, 12.0, 0.75],
        1e-6,
        1e-6,
        "3x^2",
    );
    dx.sum().unwrap().backward().unwrap();
    common::assert_close(
        &x.grad().unwrap().to_vec::<f32>().unwrap(),
        &[6.0, -12.0, 3.0],
        1e-6,
        1e-6,
        "6x",
    );
}

#[test]
fn gradient_penalty() {
    // loss = f(w) + |df/dx|^2 with f = sum(tanh(x @ w)); the penalty's gradient with respect
    // to w needs the graph of the first backward pass.
    let mut g = Generator::new(3);
    let x = Tensor::randn_with([4, 3], &mut g)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let w = Tensor::randn_with([3, 2], &mut g)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let loss_of = |w: &Tensor| -> Result<Tensor> {
        let f = x.matmul(w)?.tanh()?.sum()?;
        let dx = wgrad::grad(&f, &[&x], true)?.remove(0);
        f.add(&dx.square()?.sum()?)
    };
    let loss = loss_of(&w).unwrap();
    w.zero_grad();
    loss.backward().unwrap();
    let analytic = w.grad().unwrap().to_vec::<f32>().unwrap();
    // Finite differences of the whole loss in w.
    let base = w.to_vec::<f32>().unwrap();
    for j in 0..base.len() {
        let eval = |d: f32| {
            let mut v = base.clone();
            v[j] += d;
            loss_of(&Tensor::from_vec(v, [3, 2]).unwrap())
                .unwrap()
                .item::<f64>()
                .unwrap()
        };
        let numeric = (eval(1e-2) - eval(-1e-2)) / 2e-2;
        assert!(
            (analytic[j] as f64 - numeric).abs() < 2e-2 * (1.0 + numeric.abs()),
            "w[{j}]: {} vs {numeric}",
            analytic[j]
        );
    }
}

#[test]
fn in_place_change_of_saved_tensor_is_detected() {
    let x = Tensor::new([1.0f32, 2.0])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let w = Tensor::new([3.0f32, 4.0]).unwrap();
    let y = x.mul(&w).unwrap().sum().unwrap();
    w.add_(1.0).unwrap();
    let e = y.backward().unwrap_err();
    assert!(matches!(e, Error::Autograd { op: "backward", .. }));
    assert!(
        e.to_string().contains("modified by an inplace operation"),
        "{e}"
    );
    // Addition does not need its inputs' values, so the same change is harmless there.
    let y = x.add(&w).unwrap().sum().unwrap();
    w.add_(1.0).unwrap();
    y.backward().unwrap();
}

#[test]
fn gradcheck_catches_a_wrong_rule() {
    // x^2 whose gradient is deliberately wrong: the value of x^2, the gradient of x (1).
    let wrong = |xs: &[Tensor]| -> Result<Tensor> {
        let x = &xs[0];
        x.square()?.detach().add(&x.sub(x.detach())?)
    };
    let x = Tensor::new([0.5f32, 1.5, -2.0])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let e = gradcheck(wrong, std::slice::from_ref(&x), GradcheckOptions::default()).unwrap_err();
    assert!(e.to_string().contains("gradient mismatch"), "{e}");
    gradcheck(|xs| xs[0].square(), &[x], GradcheckOptions::default()).unwrap();
}

fn randn(g: &mut Generator, shape: &[usize]) -> Tensor {
    Tensor::randn_with(shape.to_vec(), g).unwrap()
}

fn leaf(t: Tensor) -> Tensor {
    t.requires_grad_(true).unwrap()
}

/// A function of tensors under test, by name.
type Case = (
    &'static str,
    Vec<Tensor>,
    Box<dyn Fn(&[Tensor]) -> Result<Tensor>>,
);

fn cases(g: &mut Generator) -> Vec<Case> {
    let pos =
        |g: &mut Generator, s: &[usize]| leaf(randn(g, s).abs().unwrap().add_scalar(0.5).unwrap());
    let nc = |g: &mut Generator| leaf(randn(g, &[4, 3])); // used through .t(): non-contiguous
    let mut v: Vec<Case> = vec![
        (
            "add broadcast",
            vec![leaf(randn(g, &[3, 1])), leaf(randn(g, &[1, 4]))],
            Box::new(|x| x[0].add(&x[1])),
        ),
        (
            "sub rank",
            vec![leaf(randn(g, &[2, 3, 4])), leaf(randn(g, &[4]))],
            Box::new(|x| x[0].sub(&x[1])),
        ),
        (
            "mul transposed",
            vec![nc(g), leaf(randn(g, &[3, 4]))],
            Box::new(|x| x[0].t()?.mul(&x[1])),
        ),
        (
            "div",
            vec![leaf(randn(g, &[2, 3])), pos(g, &[3])],
            Box::new(|x| x[0].div(&x[1])),
        ),
        (
            "pow",
            vec![pos(g, &[2, 3]), leaf(randn(g, &[2, 1]))],
            Box::new(|x| x[0].pow(&x[1])),
        ),
        (
            "maximum",
            vec![leaf(randn(g, &[5])), leaf(randn(g, &[5]))],
            Box::new(|x| x[0].maximum(&x[1])),
        ),
        (
            "minimum",
            vec![leaf(randn(g, &[3, 2])), leaf(randn(g, &[2]))],
            Box::new(|x| x[0].minimum(&x[1])),
        ),
        (
            "neg abs",
            vec![leaf(randn(g, &[6]))],
            Box::new(|x| x[0].neg()?.abs()),
        ),
        (
            "exp log sqrt",
            vec![pos(g, &[2, 3])],
            Box::new(|x| x[0].exp()?.add(&x[0].log()?)?.add(&x[0].sqrt()?)),
        ),
        (
            "sin cos tanh",
            vec![leaf(randn(g, &[7]))],
            Box::new(|x| x[0].sin()?.mul(&x[0].cos()?)?.add(&x[0].tanh()?)),
        ),
        (
            "sigmoid relu",
            vec![leaf(randn(g, &[2, 4]))],
            Box::new(|x| x[0].sigmoid()?.add(&x[0].relu()?)),
        ),
        (
            "reciprocal square",
            vec![pos(g, &[5])],
            Box::new(|x| x[0].reciprocal()?.add(&x[0].square()?)),
        ),
        (
            "pow_scalar",
            vec![pos(g, &[4])],
            Box::new(|x| x[0].pow_scalar(2.5)),
        ),
        (
            "clamp",
            vec![leaf(randn(g, &[8]))],
            Box::new(|x| x[0].clamp(-0.5, 0.5)),
        ),
        (
            "where",
            vec![leaf(randn(g, &[3, 4])), leaf(randn(g, &[4]))],
            Box::new(|x| Tensor::where_cond(&x[0].gt_scalar(0.0)?, &x[0], &x[1])),
        ),
        (
            "masked_fill",
            vec![leaf(randn(g, &[3, 4]))],
            Box::new(|x| x[0].masked_fill(&x[0].lt_scalar(0.0)?, 2.0)),
        ),
        (
            "sum dims",
            vec![leaf(randn(g, &[2, 3, 4]))],
            Box::new(|x| x[0].sum_dims([0, 2], false)),
        ),
        (
            "mean keepdim",
            vec![nc(g)],
            Box::new(|x| x[0].t()?.mean_dims([1], true)),
        ),
        (
            "prod",
            vec![pos(g, &[2, 3])],
            Box::new(|x| x[0].prod_dims([1], false)),
        ),
        (
            "amax amin",
            vec![leaf(randn(g, &[3, 4]))],
            Box::new(|x| {
                x[0].max_dims([1], false)?
                    .add(&x[0].min_dims([0], false)?.sum()?)
            }),
        ),
        (
            "max_dim values",
            vec![leaf(randn(g, &[3, 5]))],
            Box::new(|x| Ok(x[0].max_dim(1, false)?.0)),
        ),
        (
            "cumsum",
            vec![leaf(randn(g, &[3, 4]))],
            Box::new(|x| x[0].cumsum(1)),
        ),
        (
            "logsumexp",
            vec![leaf(randn(g, &[3, 4]))],
            Box::new(|x| x[0].logsumexp([1], false)),
        ),
        ("softmax", vec![nc(g)], Box::new(|x| x[0].t()?.softmax(0))),
        (
            "log_softmax",
            vec![leaf(randn(g, &[2, 5]))],
            Box::new(|x| x[0].log_softmax(-1)),
        ),
        (
            "norms",
            vec![leaf(randn(g, &[3, 4]))],
            Box::new(|x| {
                x[0].norm()?
                    .add(&x[0].vector_norm(1.0, [1], false)?)?
                    .add(&x[0].vector_norm(3.0, [0], true)?.sum()?)
            }),
        ),
        (
            "matmul batched broadcast",
            vec![leaf(randn(g, &[2, 1, 3, 4])), leaf(randn(g, &[3, 4, 2]))],
            Box::new(|x| x[0].matmul(&x[1])),
        ),
        (
            // Rows a view cannot merge (a transposed sequence) times a weight: copied into
            // order, then one 2-D product.
            "matmul transposed rows by weight",
            vec![leaf(randn(g, &[4, 3, 5])), leaf(randn(g, &[5, 2]))],
            Box::new(|x| x[0].transpose(0, 1)?.matmul(&x[1])),
        ),
        (
            "matmul vector",
            vec![leaf(randn(g, &[4])), leaf(randn(g, &[2, 4, 3]))],
            Box::new(|x| x[0].matmul(&x[1])),
        ),
        (
            "mm transposed",
            vec![nc(g), nc(g)],
            Box::new(|x| x[0].mm(&x[1].t()?)),
        ),
        (
            "mv dot",
            vec![leaf(randn(g, &[3, 4])), leaf(randn(g, &[4]))],
            Box::new(|x| x[0].mv(&x[1])?.dot(&x[0].sum_dims([1], false)?)),
        ),
        (
            "reshape permute",
            vec![leaf(randn(g, &[2, 3, 4]))],
            Box::new(|x| x[0].permute([2, 0, 1])?.reshape([4, -1])),
        ),
        (
            "slice step select",
            vec![leaf(randn(g, &[7, 5]))],
            Box::new(|x| x[0].i(s![1..;3, ..;2])?.add(&x[0].i(s![-1, 1..4])?)),
        ),
        (
            "expand squeeze unsqueeze",
            vec![leaf(randn(g, &[3, 1]))],
            Box::new(|x| x[0].expand([3, 4])?.unsqueeze(0)?.squeeze()),
        ),
        (
            "flatten",
            vec![leaf(randn(g, &[2, 3, 2]))],
            Box::new(|x| x[0].flatten(1, 2)),
        ),
        (
            "cat stack",
            vec![leaf(randn(g, &[2, 3])), leaf(randn(g, &[1, 3]))],
            Box::new(|x| {
                Tensor::stack(
                    &[
                        &Tensor::cat(&[&x[0], &x[1]], 0)?,
                        &x[0].i(s![0..1])?.expand([3, 3])?,
                    ],
                    1,
                )
            }),
        ),
        (
            "split chunk",
            vec![leaf(randn(g, &[5, 2]))],
            Box::new(|x| {
                let parts = x[0].split(2, 0)?;
                let chunks = x[0].chunk(2, 1)?;
                parts[0]
                    .sum()?
                    .add(&parts[2].mul(&chunks[1].i(s![4..5])?)?.sum()?)
            }),
        ),
        (
            "index_select",
            vec![leaf(randn(g, &[4, 3]))],
            Box::new(|x| x[0].index_select(0, &Tensor::new([3, 0, 3])?)),
        ),
        (
            "gather",
            vec![leaf(randn(g, &[3, 4]))],
            Box::new(|x| x[0].gather(1, &Tensor::new([[0, 0], [3, 1], [2, 2]])?)),
        ),
        (
            "scatter_add",
            vec![leaf(randn(g, &[3, 4])), leaf(randn(g, &[2, 4]))],
            Box::new(|x| x[0].scatter_add(0, &Tensor::new([[0, 1, 2, 0], [2, 2, 1, 0]])?, &x[1])),
        ),
        (
            "contiguous cast",
            vec![nc(g)],
            Box::new(|x| x[0].t()?.contiguous()?.to_dtype(DType::F32)),
        ),
    ];
    v.push((
        "division by self-broadcast",
        vec![pos(g, &[2, 3])],
        Box::new(|x| x[0].div(&x[0].sum_dims([1], true)?)),
    ));
    v
}

#[test]
fn gradcheck_every_differentiable_op() {
    let mut g = Generator::new(7);
    for (name, inputs, f) in cases(&mut g) {
        // Ties and kinks (abs at 0, relu at 0, clamp bounds) are avoided by random inputs.
        gradcheck(
            &f,
            &inputs,
            GradcheckOptions {
                eps: 1e-3,
                atol: 2e-2,
                rtol: 2e-2,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn max_ties_share_the_gradient() {
    let x = Tensor::new([1.0f32, 3.0, 3.0, 2.0])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    x.max().unwrap().backward().unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 0.5, 0.5, 0.0]
    );
}

#[test]
fn memory_stays_flat_over_many_steps() {
    let device = wgrad::Device::Cpu;
    let w = Tensor::randn([8, 4]).unwrap().requires_grad_(true).unwrap();
    let x = Tensor::randn([16, 8]).unwrap();
    let step = || {
        let loss = x
            .matmul(&w)
            .unwrap()
            .tanh()
            .unwrap()
            .square()
            .unwrap()
            .mean()
            .unwrap();
        loss.backward().unwrap();
        wgrad::no_grad_scope(|| {
            w.sub_(w.grad().unwrap().mul_scalar(0.01).unwrap())
                .unwrap()
                .clone()
        });
        w.zero_grad();
    };
    for _ in 0..100 {
        step();
    }
    let before = device.memory_stats().live_bytes;
    for _ in 0..10_000 {
        step();
    }
    let after = device.memory_stats().live_bytes;
    // Other tests run in parallel threads and allocate too; a leak of even one 128-byte
    // buffer per step would add over a megabyte.
    assert!(
        after < before + (1 << 20),
        "live bytes grew from {before} to {after}"
    );
}

#[test]
fn leaves_sharing_an_upstream_gradient_accumulate_separately() {
    // `a + b` hands the same gradient to both leaves; accumulating into one later must not
    // change the other.
    let a = Tensor::new([1.0f32, 2.0])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let b = Tensor::new([3.0f32, 4.0])
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    a.add(&b).unwrap().sum().unwrap().backward().unwrap();
    a.mul_scalar(5.0)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(a.grad().unwrap().to_vec::<f32>().unwrap(), vec![6.0, 6.0]);
    assert_eq!(b.grad().unwrap().to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
    // Only the needed operand gradients are computed; a constant input gets none.
    let w = Tensor::ones([3, 2]).unwrap().requires_grad_(true).unwrap();
    let x = Tensor::ones([4, 3]).unwrap();
    x.matmul(&w).unwrap().sum().unwrap().backward().unwrap();
    assert!(x.grad().is_none());
    assert_eq!(w.grad().unwrap().to_vec::<f32>().unwrap(), vec![4.0; 6]);
}

/// `wgrad::grad` is `torch.autograd.grad`: gradients of the named inputs, leaves or not,
/// with no `.grad` read or written, on every device.
#[test]
fn grad_returns_the_named_gradients_and_writes_no_grad() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::new([1.0f32, -2.0, 3.0])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let w = Tensor::new([0.5f32, 4.0, -1.0])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let earlier = Tensor::new([9.0f32, 9.0, 9.0])?.to_device(&dev)?;
        x.set_grad(Some(earlier.clone()))?;
        let h = x.mul(&w)?;
        let y = h.square()?.sum()?;
        // dy/dh = 2h, for the intermediate h; and dy/dx = 2h * w beside it.
        let g = wgrad::grad(&y, &[&h, &x], false)?;
        let hv = h.to_vec::<f32>()?;
        let wv = w.to_vec::<f32>()?;
        assert_eq!(
            g[0].to_vec::<f32>()?,
            hv.iter().map(|v| 2.0 * v).collect::<Vec<_>>()
        );
        let dx: Vec<f32> = hv.iter().zip(&wv).map(|(h, w)| 2.0 * h * w).collect();
        assert_eq!(g[1].to_vec::<f32>()?, dx);
        assert!(w.grad().is_none(), "w.grad was written on {dev}");
        assert_eq!(
            x.grad().unwrap().to_vec::<f32>()?,
            vec![9.0; 3],
            "x.grad changed on {dev}"
        );
        assert!(!g[0].requires_grad());
        // An input the output does not depend on is an error, as in PyTorch.
        let unused = Tensor::new([1.0f32])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let e = wgrad::grad(&y, &[&unused], false).unwrap_err();
        assert!(
            e.to_string().contains("does not appear in the graph"),
            "{e}"
        );
        // The first pass released y's graph (no create_graph): a second one is an error, as
        // in PyTorch.
        let e = wgrad::grad(&y, &[&h], false).unwrap_err();
        assert!(e.to_string().contains("second time"), "{e}");
        // With create_graph the gradient of a non-leaf can be differentiated again:
        // d/dx sum(dy/dh) = d/dx sum(2 x w) = 2w.
        let h = x.mul(&w)?;
        let y = h.square()?.sum()?;
        let dh = wgrad::grad(&y, &[&h], true)?.remove(0);
        let ddx = wgrad::grad(&dh.sum()?, &[&x], false)?.remove(0);
        assert_eq!(
            ddx.to_vec::<f32>()?,
            wv.iter().map(|w| 2.0 * w).collect::<Vec<_>>()
        );
        assert!(w.grad().is_none());
    }
    Ok(())
}

/// GELU is one kernel forward and one backward (`gelu_derivative`); both derivatives agree
/// with finite differences, and the backward kernel is differentiable again (gradient
/// penalties, create_graph), on every device.
#[test]
fn gelu_is_one_kernel_with_first_and_second_derivatives() -> Result<()> {
    for dev in common::devices() {
        let x = wgrad::seeded(3, || Tensor::randn_on([4, 5], &dev))?
            .mul_scalar(2.0)?
            .requires_grad_(true)?;
        gradcheck(
            |xs| xs[0].gelu(),
            std::slice::from_ref(&x),
            GradcheckOptions::default(),
        )?;
        // The gradient through create_graph, and its own gradient: gelu''(x) = φ(x) (2 - x^2).
        let g = wgrad::grad(&x.gelu()?.sum()?, &[&x], true)?.remove(0);
        let gg = wgrad::grad(&g.sum()?, &[&x], false)?.remove(0);
        let second: Vec<f64> = common::floats(&x)
            .iter()
            .map(|&v| {
                let v = v as f64;
                (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt() * (2.0 - v * v)
            })
            .collect();
        common::assert_close(&common::floats(&gg), &second, 1e-4, 1e-5, "gelu''");
        // PyTorch: F.gelu(tensor([-1., 0., 1.])) and its gradient 0.5 (1 + erf(x / sqrt 2))
        // + x exp(-x^2 / 2) / sqrt(2 pi) at those points.
        let x = Tensor::new([-1.0f32, 0.0, 1.0])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let y = x.gelu()?;
        common::assert_close(
            &common::floats(&y),
            &[-0.158_655_25, 0.0, 0.841_344_7],
            1e-5,
            1e-6,
            "gelu",
        );
        y.sum()?.backward()?;
        common::assert_close(
            &common::floats(&x.grad().unwrap()),
            &[-0.083_315_4, 0.5, 1.083_315_4],
            1e-5,
            1e-6,
            "gelu'",
        );
        assert!(Tensor::new([1i64])?.to_device(&dev)?.gelu().is_err());
    }
    Ok(())
}

/// The gradients of many slices and selects of one tensor (a recurrent layer's input, one
/// select per step) are added into one buffer in place; overlapping slices, a use of the
/// whole tensor beside them, and a gradient another node also holds all still sum right.
#[test]
fn gradients_of_many_views_of_one_tensor_sum_in_place() -> Result<()> {
    for dev in common::devices() {
        let x = wgrad::seeded(5, || Tensor::randn_on([4, 3], &dev))?.requires_grad_(true)?;
        let y = x.mul_scalar(2.0)?;
        let mut loss = y.sum()?;
        for t in 0..4 {
            loss = loss.add(&y.select(0, t as isize)?.mul_scalar((t + 1) as f64)?.sum()?)?;
        }
        // Two overlapping slices of rows 1..3 and 2..4, and a column.
        loss = loss.add(&y.narrow(0, 1, 2)?.sum()?)?;
        loss = loss.add(&y.narrow(0, 2, 2)?.sum()?)?;
        loss = loss.add(&y.select(1, 0)?.sum()?.mul_scalar(10.0)?)?;
        loss.backward()?;
        // d loss / d y[r, c] = 1 + (r + 1) + [r in 1..3] + [r in 2..4] + 10 [c == 0]; times 2.
        let mut want = Vec::new();
        for r in 0..4 {
            for c in 0..3 {
                let d = 1.0
                    + (r + 1) as f64
                    + f64::from((1..3).contains(&r))
                    + f64::from((2..4).contains(&r))
                    + if c == 0 { 10.0 } else { 0.0 };
                want.push(2.0 * d);
            }
        }
        common::assert_close(
            &common::floats(&x.grad().unwrap()),
            &want,
            0.0,
            1e-5,
            "views",
        );
        // The same with the view gradients needed by name (grad), where the first
        // contribution is also the returned gradient of another input.
        let a = Tensor::ones_on([3, 2], &dev)?.requires_grad_(true)?;
        let b = a.mul_scalar(1.0)?;
        let l = b
            .select(0, 0)?
            .sum()?
            .add(&b.select(0, 2)?.sum()?)?
            .add(&b.sum()?)?;
        let gs = wgrad::grad(&l, &[&a, &b], false)?;
        assert_eq!(common::floats(&gs[1]), [2., 2., 1., 1., 2., 2.]);
        assert_eq!(common::floats(&gs[0]), [2., 2., 1., 1., 2., 2.]);
    }
    Ok(())
}

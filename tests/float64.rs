//! F64 tensors on every device: computed in f64 (the CPU's kernels; a GPU, whose WGSL has no
//! f64, runs their ops on the host and keeps the data on the device), with f64 gradients
//! that a tight gradcheck accepts.

mod common;

use wgrad::{gradcheck, DType, GradcheckOptions, Result, Tensor};

#[test]
fn f64_tensors_compute_in_f64_on_every_device() -> Result<()> {
    for dev in common::devices() {
        let d = DType::F64;
        // A difference f32 cannot see.
        let x = Tensor::full_on([2], 1.0, (d, &dev))?
            .add_scalar(1e-10)?
            .sub_scalar(1.0)?;
        let got = x.to_vec::<f64>()?;
        assert_eq!(got[0], (1.0f64 + 1e-10) - 1.0, "on {dev} (f32 gives 0)");
        // Transcendentals to f64 precision, against std.
        let v: Vec<f64> = (0..50).map(|i| i as f64 * 0.37 - 9.0).collect();
        let t = Tensor::from_vec(v.clone(), [50])?.to_device(&dev)?;
        type Reference = fn(f64) -> f64;
        let cases: [(&str, Tensor, Reference); 4] = [
            ("exp", t.exp()?, f64::exp),
            ("sin", t.sin()?, f64::sin),
            ("tanh", t.tanh()?, f64::tanh),
            ("sigmoid", t.sigmoid()?, |x| 1.0 / (1.0 + (-x).exp())),
        ];
        for (name, got, f) in cases {
            assert_eq!(got.dtype(), d);
            for (g, &x) in got.to_vec::<f64>()?.iter().zip(&v) {
                let want = f(x);
                assert!(
                    (g - want).abs() <= 1e-14 * want.abs().max(1.0),
                    "{name}({x}) on {dev}: {g} vs {want}"
                );
            }
        }
        // A sum and a product of matrices in f64.
        let a = Tensor::from_vec(
            (0..12).map(|i| 1.0 + i as f64 * 1e-9).collect::<Vec<_>>(),
            [3, 4],
        )?
        .to_device(&dev)?;
        let s = a.sum()?.item::<f64>()?;
        assert!((s - (12.0 + 66.0 * 1e-9)).abs() < 1e-12, "sum {s} on {dev}");
        let p = a.matmul(&a.t()?)?.to_vec::<f64>()?;
        let row = |r: usize| (0..4).map(move |c| 1.0 + (r * 4 + c) as f64 * 1e-9);
        let want: f64 = row(0).zip(row(1)).map(|(x, y)| x * y).sum();
        assert!(
            (p[1] - want).abs() < 1e-12,
            "matmul on {dev}: {} vs {want}",
            p[1]
        );
        // Gradients in f64 agree with central differences to 1e-8.
        let w = Tensor::from_vec(vec![0.3f64, -1.2, 2.0], [3])?
            .to_device(&dev)?
            .requires_grad_(true)?;
        let f =
            |w: &Tensor| -> Result<Tensor> { w.exp()?.mul(&w.sin()?)?.softmax(0)?.mul(w)?.sum() };
        f(&w)?.backward()?;
        let g = w.grad().expect("a gradient");
        assert_eq!(g.dtype(), d);
        let base = w.detach().to_vec::<f64>()?;
        for (i, gi) in g.to_vec::<f64>()?.iter().enumerate() {
            let at = |h: f64| -> Result<f64> {
                let mut v = base.clone();
                v[i] += h;
                f(&Tensor::from_vec(v, [3])?.to_device(&dev)?)?.item::<f64>()
            };
            let numeric = (at(1e-6)? - at(-1e-6)?) / 2e-6;
            assert!(
                (gi - numeric).abs() < 1e-8,
                "d/dw{i} on {dev}: {gi} vs {numeric}"
            );
        }
        // Promotion, printing, in-place writes through views on the device.
        assert_eq!((&a + &a.to_dtype(DType::F32)?).dtype(), d);
        assert_eq!(a.mul_scalar(2.5)?.dtype(), d);
        let shown = Tensor::from_vec(vec![1.5f64, -2.0], [2])?.to_device(&dev)?;
        assert_eq!(
            shown.to_string(),
            "tensor([ 1.5000, -2.0000], dtype=torch.float64)"
        );
        let m = Tensor::zeros_on([3, 5], (d, &dev))?;
        m.t()?.narrow(0, 1, 2)?.fill_(0.1)?;
        m.narrow(0, 2, 1)?.add_(1e-12)?;
        let got = m.to_vec::<f64>()?;
        assert_eq!(got[1], 0.1);
        assert_eq!(got[11], 0.1 + 1e-12);
        assert_eq!(got[10], 1e-12);
        // Scatters (an index line, as an embedding's gradient, and a general index).
        let table = Tensor::zeros_on([4, 2], (d, &dev))?.requires_grad_(true)?;
        let ids = Tensor::new([1i64, 3, 1])?.to_device(&dev)?;
        table
            .index_select(0, &ids)?
            .mul_scalar(0.5)?
            .sum()?
            .backward()?;
        assert_eq!(
            table.grad().unwrap().to_vec::<f64>()?,
            vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.5]
        );
        let base = Tensor::zeros_on([2, 3], (d, &dev))?;
        let index = Tensor::new([[2i64, 0, 2], [1, 1, 0]])?.to_device(&dev)?;
        let src = Tensor::full_on([2, 3], 0.25, (d, &dev))?;
        let added = base.scatter_add(1, &index, &src)?.to_vec::<f64>()?;
        assert_eq!(added, vec![0.25, 0.0, 0.5, 0.25, 0.5, 0.0]);
        // gradcheck at f64 precision.
        let x = Tensor::from_vec(vec![0.5f64, -0.25, 1.5, 2.0], [2, 2])?.to_device(&dev)?;
        let tight = GradcheckOptions {
            eps: 1e-6,
            atol: 1e-8,
            rtol: 1e-7,
        };
        gradcheck(
            |xs| xs[0].matmul(&xs[0])?.tanh()?.log_softmax(1),
            &[x.requires_grad_(true)?],
            tight,
        )?;
        // Autocast leaves F64 alone, as PyTorch's does.
        let _amp = wgrad::autocast(DType::BF16)?;
        assert_eq!(a.matmul(&a.t()?)?.dtype(), d);
    }
    Ok(())
}

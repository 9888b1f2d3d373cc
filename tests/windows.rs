//! `Tensor::unfold` (sliding windows as a view) and its adjoint, which the convolutions and
//! pools are built on: values as PyTorch documents them, gradients that sum overlapping
//! windows (first and second order, reverse and forward mode), refusals, on every device.
//! The convolutions' values and gradients against PyTorch are the golden cases.

mod common;

use wgrad::{gradcheck, GradcheckOptions, Result, Tensor};

#[test]
fn unfold_is_pytorchs_sliding_window_view() -> Result<()> {
    for dev in common::devices() {
        // PyTorch's documented example: arange(1, 8).unfold(0, 2, 1) and (0, 2, 2).
        let x = Tensor::arange_on(1.0, 8.0, 1.0, &dev)?;
        assert_eq!(
            x.unfold(0, 2, 2)?.to_vec2::<f32>()?,
            vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]
        );
        let w = x.unfold(0, 2, 1)?;
        assert_eq!(w.shape(), &[6, 2]);
        assert_eq!(w.storage_id(), x.storage_id(), "a view");
        assert_eq!(w.to_vec2::<f32>()?[5], vec![6.0, 7.0]);
        // Along an inner dim of a matrix, and twice (2-D windows, as convolutions take them).
        let m = Tensor::arange_on(0.0, 20.0, 1.0, &dev)?.reshape([4, 5])?;
        let rows = m.unfold(1, 3, 2)?;
        assert_eq!(rows.shape(), &[4, 2, 3]);
        assert_eq!(
            common::floats(&rows.select(0, 1)?),
            [5., 6., 7., 7., 8., 9.]
        );
        let patches = m.unfold(0, 2, 2)?.unfold(1, 2, 3)?;
        assert_eq!(patches.shape(), &[2, 2, 2, 2]);
        // Patch (1, 1): rows 2..4, columns 3..5.
        assert_eq!(
            common::floats(&patches.select(0, 1)?.select(0, 1)?),
            [13., 14., 18., 19.]
        );
        // A 0-d tensor is one element; a size-0 window is allowed, as in PyTorch.
        let s = Tensor::scalar(3.0f32)?.to_device(&dev)?;
        assert_eq!(s.unfold(0, 1, 1)?.shape(), &[1]);
        assert_eq!(x.unfold(0, 0, 3)?.shape(), &[3, 0]);
    }
    Ok(())
}

#[test]
fn the_gradient_of_unfold_sums_the_windows() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::arange_on(0.0, 5.0, 1.0, &dev)?.requires_grad_(true)?;
        // Windows of 3, step 1: element i is in min(i + 1, 3, 5 - i) windows.
        x.unfold(0, 3, 1)?.sum()?.backward()?;
        assert_eq!(common::floats(&x.grad().unwrap()), [1., 2., 3., 2., 1.]);
        // Step 2, size 2: the last element is in no window.
        x.zero_grad();
        x.unfold(0, 2, 2)?.sum()?.backward()?;
        assert_eq!(common::floats(&x.grad().unwrap()), [1., 1., 1., 1., 0.]);
        // Weighted, 2-D, strided windows against finite differences.
        let img = wgrad::seeded(0, || Tensor::randn_on([2, 7, 6], &dev))?.requires_grad_(true)?;
        gradcheck(
            |xs| xs[0].unfold(1, 3, 2)?.unfold(2, 2, 1)?.square(),
            std::slice::from_ref(&img),
            GradcheckOptions::default(),
        )?;
        // Second order: the gradient (a fold) is differentiable again, and its derivative
        // is unfold's: d/dx sum(g(x) * c) with g = fold(unfold(x)^2 * 2)...
        let y = img.unfold(1, 3, 2)?.square()?.sum()?;
        let g = wgrad::grad(&y, &[&img], true)?.remove(0);
        let gg = wgrad::grad(&g.sum()?, &[&img], false)?.remove(0);
        // ...which is 2 * (windows covering each element)^2... per element: the count c of
        // windows holding it gives g = 2 c x, so d(sum g)/dx = 2 c.
        let ones = Tensor::ones_on([2, 7, 6], &dev)?.requires_grad_(true)?;
        ones.unfold(1, 3, 2)?.sum()?.backward()?;
        let count = ones.grad().unwrap();
        common::assert_close(
            &common::floats(&gg),
            &common::floats(&count.mul_scalar(2.0)?)
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>(),
            1e-6,
            1e-6,
            "second-order gradient of unfold",
        );
        // Forward mode: the tangent is unfolded like the primal.
        let t = Tensor::randn_on([2, 7, 6], &dev)?;
        let (out, tangent) = wgrad::func::jvp(
            |xs| xs[0].unfold(2, 4, 2),
            &[img.detach()],
            std::slice::from_ref(&t),
        )?;
        assert_eq!(out.shape(), &[2, 7, 2, 4]);
        assert_eq!(
            common::floats(&tangent),
            common::floats(&t.unfold(2, 4, 2)?.contiguous()?)
        );
        // Windows that tile a dim exactly (a pool's) fold back by moving each tap to its
        // place: grad[i, 2j + t] = w[i, j, t], first and second order.
        let x = wgrad::seeded(1, || Tensor::randn_on([3, 6], &dev))?.requires_grad_(true)?;
        let w = wgrad::seeded(2, || Tensor::randn_on([3, 3, 2], &dev))?;
        (&x.unfold(1, 2, 2)? * &w).sum()?.backward()?;
        assert_eq!(
            common::floats(&x.grad().unwrap()),
            common::floats(&w.reshape([3, 6])?)
        );
        let pooled = |xs: &[Tensor]| xs[0].unfold(1, 2, 2)?.unfold(2, 3, 3)?.square();
        let img = wgrad::seeded(3, || Tensor::randn_on([2, 4, 6], &dev))?.requires_grad_(true)?;
        gradcheck(
            pooled,
            std::slice::from_ref(&img),
            GradcheckOptions::default(),
        )?;
        let y = pooled(std::slice::from_ref(&img))?.sum()?;
        let g = wgrad::grad(&y, &[&img], true)?.remove(0);
        let gg = wgrad::grad(&g.sum()?, &[&img], false)?.remove(0);
        assert_eq!(
            common::floats(&gg),
            vec![2.0; 48],
            "every element in one window"
        );
    }
    Ok(())
}

#[test]
fn unfold_refuses_bad_windows_and_writes_into_overlapping_ones() -> Result<()> {
    for dev in common::devices() {
        let x = Tensor::zeros_on([3, 4], &dev)?;
        let e = x.unfold(1, 5, 1).unwrap_err().to_string();
        assert!(e.contains("unfold") && e.contains("[3, 4]"), "{e}");
        let e = x.unfold(1, 2, 0).unwrap_err().to_string();
        assert!(e.contains("step 0"), "{e}");
        assert!(x.unfold(2, 1, 1).is_err(), "dim out of range");
        // Overlapping windows share elements: writing into them is refused, as in PyTorch;
        // windows that do not overlap can be written.
        let e = x.unfold(1, 2, 1)?.add_(1.0).unwrap_err().to_string();
        assert!(e.contains("share memory"), "{e}");
        x.unfold(1, 2, 2)?.add_(1.0)?;
        assert_eq!(common::floats(&x.sum()?), [12.0]);
    }
    Ok(())
}

/// The GPU folds windows back in one kernel (each element sums its own taps in order); its
/// gradients are the CPU's to the bit, for overlapping, gapped and tiling windows and for
/// upstream gradients read through strides.
#[test]
fn the_fold_is_the_same_on_every_device() -> Result<()> {
    let devices = common::devices();
    let cases = [
        (1usize, 3usize, 1usize),
        (1, 3, 2),
        (2, 2, 3),
        (1, 4, 4),
        (2, 7, 1),
        (0, 1, 1),
    ];
    for (k, &(dim, size, step)) in cases.iter().enumerate() {
        let mut grads: Vec<Vec<u32>> = vec![];
        for dev in &devices {
            // Drawn on the CPU: normal draws may differ by an ulp between devices.
            let x = wgrad::seeded(k as u64, || Tensor::randn([3, 11, 7]))?
                .to_device(dev)?
                .requires_grad_(true)?;
            let windows = x.unfold(dim as isize, size, step)?;
            // The upstream gradient through a transposed view: strided reads.
            let mut transposed = windows.shape().to_vec();
            transposed.swap(0, 3);
            let w = wgrad::seeded(100 + k as u64, || Tensor::randn(transposed.clone()))?
                .to_device(dev)?
                .transpose(0, 3)?;
            (&windows * &w).sum()?.backward()?;
            let g = x.grad().expect("a gradient");
            grads.push(common::floats(&g).iter().map(|v| v.to_bits()).collect());
        }
        assert!(
            grads.windows(2).all(|p| p[0] == p[1]),
            "unfold({dim}, {size}, {step}): the devices' gradients differ"
        );
    }
    Ok(())
}

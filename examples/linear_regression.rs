//! Linear regression from scratch, as in the course: synthetic data from w = [2, -3.4],
//! b = 4.2 with noise 0.01, minibatch SGD with batch 10 and learning rate 0.03, 3 epochs.
//!
//! cargo run --release --example linear_regression

use wgrad::{Device, Result, Tensor};

fn squared_loss(y_hat: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok((y_hat - y).square()? / 2.0)
}

fn main() -> Result<()> {
    let device = Device::auto()?;
    wgrad::manual_seed(0);
    let (true_w, true_b) = (Tensor::new([2.0, -3.4])?, 4.2);
    let n = 1000;
    // y = X w + b + noise
    let x = Tensor::randn([n, 2])?;
    let y = x.mv(&true_w)? + true_b + Tensor::randn([n])? * 0.01;
    let (x, y) = (x.to_device(&device)?, y.to_device(&device)?);

    let w = (Tensor::randn_on([2], &device)? * 0.01).requires_grad_(true)?;
    let b = Tensor::zeros_on([1], &device)?.requires_grad_(true)?;
    let (lr, batch, epochs) = (0.03, 10, 3);
    for epoch in 0..epochs {
        let order = Tensor::randperm_on(n, &device)?;
        for start in (0..n).step_by(batch) {
            let idx = order.narrow(0, start, batch.min(n - start))?;
            let (xb, yb) = (x.index_select(0, &idx)?, y.index_select(0, &idx)?);
            squared_loss(&(xb.mv(&w)? + &b), &yb)?.sum()?.backward()?;
            // Minibatch SGD: p -= lr * grad / batch, then zero the gradient.
            let _no_grad = wgrad::no_grad();
            for p in [&w, &b] {
                if let Some(g) = p.grad() {
                    p.sub_(&(g * (lr / batch as f64)))?;
                }
                p.zero_grad();
            }
        }
        let _no_grad = wgrad::no_grad();
        let train_loss = squared_loss(&(x.mv(&w)? + &b), &y)?.mean()?;
        println!("epoch {}, loss {:.6}", epoch + 1, train_loss.item::<f64>()?);
    }
    let (w_hat, b_hat) = (w.to_vec::<f32>()?, b.item::<f64>()?);
    println!("learned w = {w_hat:?}, b = {b_hat:.4} (true w = [2, -3.4], b = 4.2)");
    println!(
        "error in w: [{:.5}, {:.5}], error in b: {:.5}",
        2.0 - w_hat[0],
        -3.4 - w_hat[1],
        true_b - b_hat
    );
    Ok(())
}

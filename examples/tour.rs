//! A walk through the tensor examples of the course notes (sections 2.2, 2.3 and the
//! autograd section), printing each result as PyTorch would.
//!
//! cargo run --release --example tour

use wgrad::{s, DType, Result, Tensor};

fn section(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<()> {
    section("creation");
    let x = Tensor::arange(1, 12, 2)?;
    println!("x = arange(1, 12, 2)      {x}");
    println!("x.numel() = {}, x.shape = {:?}", x.numel(), x.shape());
    println!("x.reshape(3, 2) =\n{}", x.reshape([3, 2])?);
    wgrad::manual_seed(0);
    println!("rand(2, 3) =\n{}", Tensor::rand([2, 3])?);
    println!("randn(2, 3) =\n{}", Tensor::randn([2, 3])?);
    println!(
        "randint(1, 10, (4, 3)) =\n{}",
        Tensor::randint(1, 10, [4, 3])?
    );
    println!("randperm(4) = {}", Tensor::randperm(4)?);

    section("joining");
    let x = Tensor::arange_on(0, 12, 1, DType::F32)?.reshape([3, 4])?;
    let y = Tensor::new([[2.0, 1., 4., 3.], [1., 2., 3., 4.], [4., 3., 2., 1.]])?;
    println!("cat((x, y), dim=0) =\n{}", Tensor::cat(&[&x, &y], 0)?);
    println!("cat((x, y), dim=1) =\n{}", Tensor::cat(&[&x, &y], 1)?);

    section("elementwise and broadcasting");
    let a = Tensor::new([1.0, 2., 4., 8.])?;
    let b = Tensor::new([5, 4, 3, 2])?;
    println!("a * b = {}", &a * &b);
    println!("a ** b = {}", a.pow(&b)?);
    println!("x == y =\n{}", x.eq(&y)?);
    println!("x.sum() = {}", x.sum()?);
    let a = Tensor::arange(0, 3, 1)?.reshape([3, 1])?;
    let b = Tensor::arange(0, 2, 1)?.reshape([1, 2])?;
    println!("(3x1) + (1x2) =\n{}", &a + &b);
    match (Tensor::arange(0, 3, 1)? + Tensor::arange(0, 6, 1)?.reshape([3, 2])?).check() {
        Ok(t) => println!("unexpected: {t}"),
        Err(e) => println!("(3) + (3x2) is an error: {e}"),
    }

    section("indexing and writing in place");
    let b = Tensor::arange(0, 12, 1)?.reshape([3, 4])?;
    println!("b[-1] = {}", b.i(s![-1])?);
    println!("b[1:3] =\n{}", b.i(s![1..3])?);
    b.assign(s![1, 2], 111)?;
    println!("after b[1, 2] = 111:\n{b}");
    b.assign(s![1..3, ..], 12)?;
    println!("after b[1:3, :] = 12:\n{b}");
    let big = Tensor::arange(0, 35, 1)?.reshape([7, 5])?;
    println!("t[::3, ::2] =\n{}", big.i(s![..;3, ..;2])?);
    let c = Tensor::zeros_like(&b)?;
    let before = c.data_ptr();
    c.assign(s![..], &(&b + 1))?;
    println!("c[:] = b + 1 kept c's storage: {}", c.data_ptr() == before);
    println!(
        "tensor([3.5]).item() = {:?}",
        Tensor::new([3.5])?.item::<f32>()?
    );

    section("linear algebra");
    let a = Tensor::arange(0.0, 20.0, 1.0)?.reshape([5, 4])?;
    println!("A.T =\n{}", a.t()?);
    println!("A.sum(axis=0) = {}", a.sum_dims([0], false)?);
    println!("A.sum(axis=1, keepdim) =\n{}", a.sum_dims([1], true)?);
    println!("A.mean() = {}", a.mean()?);
    println!("A.cumsum(0) =\n{}", a.cumsum(0)?);
    let v = Tensor::arange(0.0, 4.0, 1.0)?;
    println!("A @ v = {}", a.mv(&v)?);
    println!("A @ A.T =\n{}", a.mm(&a.t()?)?);
    println!(
        "norm(v) = {}, L1 = {}",
        v.norm()?,
        v.vector_norm(1.0, [0], false)?
    );
    println!("frobenius(ones(4, 9)) = {}", Tensor::ones([4, 9])?.norm()?);

    section("autograd");
    let x = Tensor::arange(0.0, 4.0, 1.0)?.requires_grad_(true)?;
    println!("x = {x}");
    let y = 2.0 * x.dot(&x)?;
    println!("y = 2 * dot(x, x) = {y}");
    y.backward()?;
    println!("x.grad = {}", x.grad().expect("backward reached x"));
    x.sum()?.backward()?;
    println!(
        "after x.sum().backward(), accumulated: {}",
        x.grad().expect("grad")
    );
    Ok(())
}

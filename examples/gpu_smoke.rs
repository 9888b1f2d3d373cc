fn main() -> wgrad::Result<()> {
    let d = wgrad::Device::gpu()?;
    println!("{d}");
    let x = wgrad::Tensor::arange(0.0, 12.0, 1.0)?.reshape([3, 4])?.to_device(&d)?;
    println!("{}", x);
    println!("{}", (&x * 2.0)?.t()?);
    println!("{}", x.sum_dims([1], false)?);
    println!("{}", x.matmul(&x.t()?)?);
    Ok(())
}

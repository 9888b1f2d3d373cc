//! Data-parallel training across processes through MPI: every process is one rank with one
//! replica of an MLP, trains on its shard of each batch, and the gradients are averaged
//! through `MPI_Allreduce`. At the end every rank compares its parameters with a model
//! trained in this process alone on the whole batch, and fails if they differ.
//!
//! ```text
//! cargo build --release --example ddp_mpi --features mpi
//! mpirun -np 2 target/release/examples/ddp_mpi [--device cpu|gpu] [--fail-rank R]
//! ```
//!
//! On several machines, give mpirun a host file (`mpirun -np 8 --hostfile hosts ...`, one
//! line per machine: `node1 slots=4`); each process opens its device (with `--device gpu`,
//! `Device::gpu_at` of its rank on the machine, modulo the adapters it has).
//!
//! `--fail-rank R` makes rank R's loss fail at step 3 (a label out of range): every rank
//! must then report an error for that step instead of waiting for rank R forever.

use wgrad::distributed::{Collective, DistributedDataParallel, MpiGroup};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::{Device, Error, Result, Tensor};

fn mlp(dev: &Device) -> Result<nn::Sequential> {
    Ok(nn::Sequential::new()
        .add(nn::Linear::new(20, 32, dev)?)
        .add(nn::ReLU)
        .add(nn::Linear::new(32, 5, dev)?))
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn main() -> Result<()> {
    let group = MpiGroup::init()?;
    let (rank, world) = (group.rank(), group.world_size());
    let dev = match arg("--device").as_deref() {
        Some("gpu") => {
            let local: usize = std::env::var("OMPI_COMM_WORLD_LOCAL_RANK")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(rank);
            Device::gpu_at(local % Device::gpus().len().max(1))?
        }
        _ => Device::Cpu,
    };
    let fail_rank: Option<usize> = arg("--fail-rank").and_then(|r| r.parse().ok());

    // The same data on every rank; each takes its rows of every batch.
    let (steps, batch) = (20, 48);
    let x = wgrad::seeded(1, || Tensor::randn([steps * batch, 20]))?;
    let y = wgrad::seeded(2, || Tensor::randint(0, 5, [steps * batch]))?;
    let rows = batch / world + usize::from(rank < batch % world);
    let first = rank * (batch / world) + rank.min(batch % world);

    let model = wgrad::seeded(rank as u64, || mlp(&dev))?;
    let opt = Sgd::new(model.parameters(), 0.1).momentum(0.9);
    let mut ddp = DistributedDataParallel::new(group, model, opt)?;
    let mut exchange = std::time::Duration::ZERO;
    for step in 0..steps {
        let xs = x.narrow(0, step * batch + first, rows)?.to_device(&dev)?;
        let mut ys = y.narrow(0, step * batch + first, rows)?;
        if fail_rank == Some(rank) && step == 3 {
            ys = ys.add_scalar(100)?;
        }
        let ys = ys.to_device(&dev)?;
        match ddp.step(rows, |m| nn::cross_entropy(&m.forward(&xs)?, &ys)) {
            Ok(report) => {
                exchange += report.exchange;
                if rank == 0 && step % 5 == 0 {
                    println!("step {step}: loss {:.4}", report.loss);
                }
            }
            Err(e) if fail_rank.is_some() => {
                println!("rank {rank} of {world}: step {step} failed as expected: {e}");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    if fail_rank.is_some() {
        return Err(Error::InvalidArgument {
            op: "ddp_mpi",
            msg: format!("rank {rank}: the failing step was taken"),
        });
    }

    // One process, the whole batch, rank 0's initial parameters.
    let alone = wgrad::seeded(0, || mlp(&dev))?;
    let mut opt = Sgd::new(alone.parameters(), 0.1).momentum(0.9);
    for step in 0..steps {
        let xs = x.narrow(0, step * batch, batch)?.to_device(&dev)?;
        let ys = y.narrow(0, step * batch, batch)?.to_device(&dev)?;
        opt.zero_grad();
        nn::cross_entropy(&alone.forward(&xs)?, &ys)?.backward()?;
        opt.step()?;
    }
    let mut worst = 0.0f32;
    for (p, q) in ddp.module().parameters().iter().zip(alone.parameters()) {
        for (a, b) in p.to_vec::<f32>()?.iter().zip(q.to_vec::<f32>()?) {
            worst = worst.max((a - b).abs() / (1.0 + b.abs()));
        }
    }
    println!(
        "rank {rank} of {world} on {dev}: largest difference to one process {worst:.2e}, {:.2} ms of exchange after backward per step",
        exchange.as_secs_f64() * 1e3 / steps as f64
    );
    if worst > 1e-5 {
        return Err(Error::InvalidArgument {
            op: "ddp_mpi",
            msg: format!("rank {rank}: parameters differ from one process's by {worst}"),
        });
    }
    Ok(())
}

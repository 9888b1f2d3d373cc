//! Data loading and preprocessing: the seed's house table, bad CSV files, the digits set
//! and the mini-batch loader.

use wgrad::data::{load_digits, DataLoader, Dataset, Table, TensorDataset};
use wgrad::{Error, Tensor};

#[test]
fn house_tiny_preprocessing_gives_the_seed_table() {
    let table =
        Table::read_csv(concat!(env!("CARGO_MANIFEST_DIR"), "/data/house_tiny.csv")).unwrap();
    let inputs = table
        .select(&["NumRooms", "Alley"])
        .unwrap()
        .fill_na_mean()
        .get_dummies(true);
    assert_eq!(inputs.names, vec!["NumRooms", "Alley_Pave", "Alley_nan"]);
    let x = inputs.to_tensor().unwrap();
    assert_eq!(
        x.to_vec2::<f32>().unwrap(),
        vec![
            vec![3.0, 1.0, 0.0],
            vec![2.0, 0.0, 1.0],
            vec![4.0, 0.0, 1.0],
            vec![3.0, 0.0, 1.0]
        ]
    );
    let y = table.select(&["Price"]).unwrap().to_tensor().unwrap();
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![127500.0, 106000.0, 178100.0, 140000.0]
    );
}

#[test]
fn bad_csv_is_an_error_with_the_line() {
    let e = Table::parse_csv("a,b\n1,2\n3\n", "ragged.csv").unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("line 3"),
        "{e}"
    );
    let e = Table::parse_csv("a,b\n1,2\n3,x4\n", "typo.csv").unwrap_err();
    assert!(
        e.to_string().contains("line 3") && e.to_string().contains("x4"),
        "{e}"
    );
    let e = Table::read_csv("/no/such/file.csv").unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("/no/such/file.csv"),
        "{e}"
    );
    let t = Table::parse_csv("a,b\n1,x\nNA,y\n", "t.csv").unwrap();
    assert!(
        t.to_tensor().is_err(),
        "categorical columns need get_dummies first"
    );
    assert!(
        t.clone().get_dummies(false).to_tensor().is_err(),
        "a missing number stays missing without fill_na_mean"
    );
    assert_eq!(
        t.fill_na_mean()
            .get_dummies(false)
            .to_tensor()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        vec![vec![1.0, 1.0, 0.0], vec![1.0, 0.0, 1.0]]
    );
}

#[test]
fn digits_load_and_loader_batches() {
    let (x, y) = load_digits(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz")).unwrap();
    assert_eq!(
        (x.shape(), y.shape()),
        (&[1797usize, 64][..], &[1797usize][..])
    );
    assert!(x.max().unwrap().item::<f64>().unwrap() <= 1.0);
    assert_eq!(y.max().unwrap().item::<i64>().unwrap(), 9);
    let ds = TensorDataset::new(x, y).unwrap();
    let loader = DataLoader::new(&ds, 256)
        .unwrap()
        .shuffle(7)
        .drop_last(true);
    assert_eq!(loader.num_batches(), 7);
    let first: Vec<(Tensor, Tensor)> = loader.epoch(0).collect::<wgrad::Result<_>>().unwrap();
    assert!(first
        .iter()
        .all(|(bx, by)| bx.shape() == [256, 64] && by.shape() == [256]));
    // Same seed and epoch: same order; another epoch: another order.
    let again: Vec<i64> = loader.epoch(0).next().unwrap().unwrap().1.to_vec().unwrap();
    assert_eq!(again, first[0].1.to_vec::<i64>().unwrap());
    let other: Vec<i64> = loader.epoch(1).next().unwrap().unwrap().1.to_vec().unwrap();
    assert_ne!(other, again);
    let all = DataLoader::new(&ds, 500).unwrap();
    assert_eq!(all.epoch(0).last().unwrap().unwrap().0.shape(), &[297, 64]);
    assert_eq!(ds.len(), 1797);
    assert!(load_digits("/no/such.gz").is_err());
}

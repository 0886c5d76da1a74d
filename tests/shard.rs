//! `encode --shard I/N` and `reconstruct --shard I/N`: slices of the data for job
//! arrays, whose outputs in order of I are the whole data's.

mod common;

use common::{temp_dir, tiny_train, vqvae_fails, vqvae_ok};

fn codes(path: &std::path::Path) -> (Vec<u64>, Vec<i64>) {
    let file: npyz::NpyFile<_> = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    (file.shape().to_vec(), file.into_vec().unwrap())
}

#[test]
fn shards_concatenate_to_the_whole_and_bad_shards_are_refused() {
    let dir = temp_dir("shard");
    let run = dir.join("run");
    vqvae_ok(&tiny_train(&run, &["--steps", "3", "--quiet"]));
    let ckpt = run.join("checkpoint.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let encode = |out: &str, shard: Option<&str>| {
        let mut args = vec!["encode", "--checkpoint", ckpt, "--out", out];
        args.extend(shard.map(|s| ["--shard", s]).into_iter().flatten());
        vqvae_ok(&args)
    };
    let whole = dir.join("whole.npy");
    encode(whole.to_str().unwrap(), None);
    let (shape, all) = codes(&whole);
    let mut joined = Vec::new();
    let mut images = 0;
    // 7 slices: the built-in images do not divide evenly, and slices differ by one.
    for i in 0..7 {
        let part = dir.join(format!("part{i}.npy"));
        encode(part.to_str().unwrap(), Some(&format!("{i}/7")));
        let (s, values) = codes(&part);
        assert_eq!(&s[1..], &shape[1..], "slice {i}'s grid");
        images += s[0];
        joined.extend(values);
    }
    assert_eq!(images, shape[0]);
    assert!(joined == all, "the slices in order are not the whole");

    // reconstruct writes exactly its slice's images.
    let slice = dir.join("slice");
    vqvae_ok(&[
        "reconstruct",
        "--checkpoint",
        ckpt,
        "--out",
        slice.to_str().unwrap(),
        "--shard",
        "2/7",
    ]);
    let rebuilt = dir.join("rebuilt");
    vqvae_ok(&[
        "reconstruct",
        "--checkpoint",
        ckpt,
        "--out",
        rebuilt.to_str().unwrap(),
    ]);
    let names = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let (part, full) = (names(&slice), names(&rebuilt));
    let n = full.len();
    assert_eq!(part, full[2 * n / 7..3 * n / 7], "slice 2's images");
    for name in &part {
        assert_eq!(
            std::fs::read(slice.join(name)).unwrap(),
            std::fs::read(rebuilt.join(name)).unwrap()
        );
    }

    for bad in ["7/7", "1/0", "x/2", "3"] {
        let out = dir.join("bad.npy");
        let m = vqvae_fails(&[
            "encode",
            "--checkpoint",
            ckpt,
            "--out",
            out.to_str().unwrap(),
            "--shard",
            bad,
        ]);
        assert!(m.contains(&format!("--shard {bad}")), "{m}");
    }
}

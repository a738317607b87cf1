use candle_core::{DType, Device, Tensor};
use vl_distill::config::Config;
use vl_distill::model::{Mode, TowerParams, TwoTower};
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (width, bs) = (args[0], args[1]);
    let mut c = Config::default_profile();
    c.model.image = vl_distill::config::ImageEncoderConfig::ConvNet { width, depth: 3 };
    let m = TwoTower::new(&c.model, 32, 384).unwrap();
    let p = m.init(0, &Device::Cpu, DType::F32).unwrap();
    let x = Tensor::randn(0f32, 1.0, (bs, 3, 32, 32), &Device::Cpu).unwrap();
    let e = Tensor::randn(0f32, 1.0, (bs, 384), &Device::Cpu).unwrap();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (image, _a) = p.image.to_vars().unwrap();
        let (text, _b) = p.text.to_vars().unwrap();
        let pp = TowerParams { image, text };
        let l = m.loss(&pp, &x, &e, Mode::Eval).unwrap();
        let t1 = t.elapsed();
        let _g = l.backward().unwrap();
        println!(
            "width {width} batch {bs}: fwd {:?} total {:?}",
            t1,
            t.elapsed()
        );
    }
}

//! Writing ONNX models: the subset of `onnx.proto` (ModelProto, GraphProto, NodeProto, TensorProto,
//! ValueInfoProto, AttributeProto) an exported graph needs, encoded as Protocol Buffers by hand, plus a
//! small builder that names nodes and initializers.
//!
//! Field numbers follow `onnx/onnx.proto` (IR version 8). Tensors are stored in `raw_data`,
//! little-endian, inside the one file, so a model is limited to protobuf's 2 GiB.

use std::collections::{HashMap, HashSet};

/// The largest message protobuf readers accept.
pub const MAX_BYTES: usize = (1 << 31) - 1;

/// Element types (`TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// float32.
    F32 = 1,
    /// uint8.
    U8 = 2,
    /// int8.
    I8 = 3,
    /// int32.
    I32 = 6,
    /// int64.
    I64 = 7,
}

/// A constant tensor (an initializer or a tensor attribute).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Shape.
    pub dims: Vec<i64>,
    /// Elements, little-endian.
    pub raw: Vec<u8>,
}

fn dims_of(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

impl Tensor {
    fn checked(name: &str, dtype: DataType, dims: &[usize], len: usize, raw: Vec<u8>) -> Self {
        assert_eq!(dims.iter().product::<usize>(), len, "tensor {name}: {len} values for shape {dims:?}");
        Tensor { name: name.to_string(), dtype, dims: dims_of(dims), raw }
    }

    /// float32 values of shape `dims`.
    pub fn f32(name: &str, dims: &[usize], v: &[f32]) -> Self {
        Self::checked(name, DataType::F32, dims, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// int8 values of shape `dims`.
    pub fn i8(name: &str, dims: &[usize], v: &[i8]) -> Self {
        Self::checked(name, DataType::I8, dims, v.len(), v.iter().map(|&x| x as u8).collect())
    }

    /// uint8 values of shape `dims`.
    pub fn u8(name: &str, dims: &[usize], v: &[u8]) -> Self {
        Self::checked(name, DataType::U8, dims, v.len(), v.to_vec())
    }

    /// int32 values of shape `dims`.
    pub fn i32(name: &str, dims: &[usize], v: &[i32]) -> Self {
        Self::checked(name, DataType::I32, dims, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// int64 values of shape `dims`.
    pub fn i64(name: &str, dims: &[usize], v: &[i64]) -> Self {
        Self::checked(name, DataType::I64, dims, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

/// A node attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// One float.
    Float(f32),
    /// One integer.
    Int(i64),
    /// Integers.
    Ints(Vec<i64>),
    /// A constant tensor.
    Tensor(Tensor),
}

/// One dimension of a graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size (`batch`, `seq`).
    Named(String),
}

/// A graph input or output: name, element type and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Shape.
    pub dims: Vec<Dim>,
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Operator (`MatMul`, `LayerNormalization`, ...).
    pub op: String,
    /// Node name.
    pub name: String,
    /// Input value names (an empty name is an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes.
    pub attrs: Vec<(String, Attr)>,
}

/// A graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Name.
    pub name: String,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Constants.
    pub initializers: Vec<Tensor>,
    /// Inputs.
    pub inputs: Vec<ValueInfo>,
    /// Outputs.
    pub outputs: Vec<ValueInfo>,
}

/// A model: a graph and the operator sets it uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Operator sets: (domain, version); `""` is the default domain.
    pub opsets: Vec<(String, i64)>,
    /// Producer name.
    pub producer: String,
    /// Producer version.
    pub producer_version: String,
    /// Free-form key/value metadata.
    pub metadata: Vec<(String, String)>,
    /// The graph.
    pub graph: Graph,
}

// Protocol Buffers wire format.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn int_field(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    key(out, field, 2);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

fn str_field(out: &mut Vec<u8>, field: u32, v: &str) {
    bytes_field(out, field, v.as_bytes());
}

fn msg_field(out: &mut Vec<u8>, field: u32, encode: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    encode(&mut inner);
    bytes_field(out, field, &inner);
}

/// Repeated integers, one key each (onnx.proto is proto2, where repeated scalars are not packed).
fn repeated_ints(out: &mut Vec<u8>, field: u32, v: &[i64]) {
    for &x in v {
        int_field(out, field, x);
    }
}

fn encode_tensor(out: &mut Vec<u8>, t: &Tensor) {
    repeated_ints(out, 1, &t.dims);
    int_field(out, 2, t.dtype as i64);
    str_field(out, 8, &t.name);
    bytes_field(out, 9, &t.raw);
}

fn encode_attr(out: &mut Vec<u8>, name: &str, a: &Attr) {
    str_field(out, 1, name);
    // AttributeProto.AttributeType: FLOAT 1, INT 2, TENSOR 4, INTS 7.
    match a {
        Attr::Float(f) => {
            key(out, 2, 5);
            out.extend_from_slice(&f.to_le_bytes());
            int_field(out, 20, 1);
        }
        Attr::Int(i) => {
            int_field(out, 3, *i);
            int_field(out, 20, 2);
        }
        Attr::Tensor(t) => {
            msg_field(out, 5, |o| encode_tensor(o, t));
            int_field(out, 20, 4);
        }
        Attr::Ints(v) => {
            repeated_ints(out, 8, v);
            int_field(out, 20, 7);
        }
    }
}

fn encode_node(out: &mut Vec<u8>, n: &Node) {
    for i in &n.inputs {
        str_field(out, 1, i);
    }
    for o in &n.outputs {
        str_field(out, 2, o);
    }
    str_field(out, 3, &n.name);
    str_field(out, 4, &n.op);
    for (name, a) in &n.attrs {
        msg_field(out, 5, |o| encode_attr(o, name, a));
    }
}

fn encode_value_info(out: &mut Vec<u8>, v: &ValueInfo) {
    str_field(out, 1, &v.name);
    // TypeProto { tensor_type (1): { elem_type (1), shape (2): { dim (1): { dim_value (1) | dim_param (2) } } } }
    msg_field(out, 2, |ty| {
        msg_field(ty, 1, |tt| {
            int_field(tt, 1, v.dtype as i64);
            msg_field(tt, 2, |shape| {
                for d in &v.dims {
                    msg_field(shape, 1, |dim| match d {
                        Dim::Fixed(n) => int_field(dim, 1, *n),
                        Dim::Named(s) => str_field(dim, 2, s),
                    });
                }
            });
        });
    });
}

fn encode_graph(out: &mut Vec<u8>, g: &Graph) {
    for n in &g.nodes {
        msg_field(out, 1, |o| encode_node(o, n));
    }
    str_field(out, 2, &g.name);
    for t in &g.initializers {
        msg_field(out, 5, |o| encode_tensor(o, t));
    }
    for v in &g.inputs {
        msg_field(out, 11, |o| encode_value_info(o, v));
    }
    for v in &g.outputs {
        msg_field(out, 12, |o| encode_value_info(o, v));
    }
}

impl Model {
    /// The model as `.onnx` bytes; an error when it exceeds protobuf's 2 GiB.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let weights: usize = self.graph.initializers.iter().map(|t| t.raw.len()).sum();
        if weights > MAX_BYTES {
            return Err(format!(
                "the graph's constants take {weights} bytes, more than the 2 GiB one ONNX file can hold"
            ));
        }
        let mut out = Vec::with_capacity(weights + (1 << 16));
        int_field(&mut out, 1, self.ir_version);
        str_field(&mut out, 2, &self.producer);
        str_field(&mut out, 3, &self.producer_version);
        msg_field(&mut out, 7, |o| encode_graph(o, &self.graph));
        for (domain, version) in &self.opsets {
            msg_field(&mut out, 8, |o| {
                str_field(o, 1, domain);
                int_field(o, 2, *version);
            });
        }
        for (k, v) in &self.metadata {
            msg_field(&mut out, 14, |o| {
                str_field(o, 1, k);
                str_field(o, 2, v);
            });
        }
        if out.len() > MAX_BYTES {
            return Err(format!("the model takes {} bytes, more than the 2 GiB one ONNX file can hold", out.len()));
        }
        Ok(out)
    }
}

/// Builds a graph: every node gets a fresh output name, every constant a unique name.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    names: HashSet<String>,
    /// Small constants already added, by name and value: reused rather than repeated.
    shared: HashMap<(String, Vec<u8>), String>,
    count: usize,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        GraphBuilder { graph: Graph { name: name.to_string(), ..Graph::default() }, ..Self::default() }
    }

    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while !self.names.insert(name.clone()) {
            i += 1;
            name = format!("{base}_{i}");
        }
        name
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DataType, dims: Vec<Dim>) -> String {
        let name = self.unique(name);
        self.graph.inputs.push(ValueInfo { name: name.clone(), dtype, dims });
        name
    }

    /// Adds a constant; returns its (unique) name.
    pub fn constant(&mut self, mut t: Tensor) -> String {
        t.name = self.unique(&t.name);
        let name = t.name.clone();
        self.graph.initializers.push(t);
        name
    }

    /// A small constant, added once per name and value: later calls return the first one's name.
    pub fn constant_once(&mut self, t: Tensor) -> String {
        let k = (t.name.clone(), [t.dims.iter().flat_map(|d| d.to_le_bytes()).collect(), t.raw.clone()].concat());
        if let Some(n) = self.shared.get(&k) {
            return n.clone();
        }
        let n = self.constant(t);
        self.shared.insert(k, n.clone());
        n
    }

    /// A float32 scalar constant (one per name and value).
    pub fn scalar(&mut self, name: &str, v: f32) -> String {
        self.constant_once(Tensor::f32(name, &[], &[v]))
    }

    /// An int64 scalar constant (one per name and value).
    pub fn int(&mut self, name: &str, v: i64) -> String {
        self.constant_once(Tensor::i64(name, &[], &[v]))
    }

    /// An int64 vector constant (one per name and value).
    pub fn ints(&mut self, name: &str, v: &[i64]) -> String {
        self.constant_once(Tensor::i64(name, &[v.len()], v))
    }

    /// Adds a node with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        self.count += 1;
        let out = self.unique(&format!("{}_{}", op.to_lowercase(), self.count));
        self.graph.nodes.push(Node {
            op: op.to_string(),
            name: format!("n{}_{op}", self.count),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.clone()],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        out
    }

    /// Declares value `value` a graph output under `name` (through an `Identity` node).
    pub fn output(&mut self, value: &str, name: &str, dtype: DataType, dims: Vec<Dim>) {
        let name = self.unique(name);
        self.count += 1;
        self.graph.nodes.push(Node {
            op: "Identity".into(),
            name: format!("n{}_Identity", self.count),
            inputs: vec![value.to_string()],
            outputs: vec![name.clone()],
            attrs: Vec::new(),
        });
        self.graph.outputs.push(ValueInfo { name, dtype, dims });
    }

    /// Bytes of constants so far.
    pub fn constant_bytes(&self) -> usize {
        self.graph.initializers.iter().map(|t| t.raw.len()).sum()
    }

    /// The graph.
    pub fn finish(self) -> Graph {
        self.graph
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_wire_format() {
        let enc = |v: u64| {
            let mut o = Vec::new();
            varint(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        // Negative int64 values take ten bytes (two's complement).
        assert_eq!(enc(-1i64 as u64), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn a_tensor_encodes_as_onnx_proto_does() {
        // The bytes `onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "c").SerializeToString()`
        // gives (onnx 1.23).
        let mut out = Vec::new();
        encode_tensor(&mut out, &Tensor::i64("c", &[2], &[1, 2]));
        let mut want = vec![0x08, 0x02, 0x10, 0x07, 0x42, 0x01, b'c', 0x4a, 0x10];
        want.extend_from_slice(&1i64.to_le_bytes());
        want.extend_from_slice(&2i64.to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn a_model_encodes_its_fields_in_order() {
        let mut g = GraphBuilder::new("g");
        let x = g.input("x", DataType::F32, vec![Dim::Named("n".into()), Dim::Fixed(2)]);
        let c = g.scalar("two", 2.0);
        let y = g.node("Mul", &[&x, &c], vec![]);
        g.output(&y, "y", DataType::F32, vec![Dim::Named("n".into()), Dim::Fixed(2)]);
        let m = Model {
            ir_version: 8,
            opsets: vec![(String::new(), 17)],
            producer: "pare".into(),
            producer_version: "0".into(),
            metadata: vec![],
            graph: g.finish(),
        };
        let bytes = m.encode().unwrap();
        // ir_version = 8, then producer_name "pare".
        assert_eq!(&bytes[..8], &[0x08, 0x08, 0x12, 0x04, b'p', b'a', b'r', b'e']);
        // The opset import closes the message: field 8, { domain "", version 17 }.
        assert_eq!(&bytes[bytes.len() - 6..], &[0x42, 0x04, 0x0a, 0x00, 0x10, 0x11]);
    }

    #[test]
    fn names_stay_unique() {
        let mut g = GraphBuilder::new("g");
        let a = g.scalar("c", 1.0);
        let b = g.scalar("c", 2.0);
        assert_ne!(a, b);
        assert_eq!(g.scalar("c", 1.0), a, "the same constant is added once");
        let n1 = g.node("Add", &[&a, &b], vec![]);
        let n2 = g.node("Add", &[&a, &b], vec![]);
        assert_ne!(n1, n2);
    }
}

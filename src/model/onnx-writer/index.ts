/**
 * camviz's ONNX writer: TF.js models (layers models, and graph models as
 * camviz imports them) as ONNX models for the ONNX Runtime engine, through
 * the OnnxTrunk contract (src/executor/onnx-trunk.ts).
 */
export { type OnnxTrunkOptions, onnxCacheDir, onnxTrunkOfLayersModel, onnxTrunkOfModel } from './cache.js';
export { OnnxWriteError, UnsupportedLayerError } from './layers.js';
export { type OnnxInputSize, WrittenTrunk, writeOnnxModel } from './write.js';

"""One training job: the config checked, data and model prepared, the epoch loop, its record
(row, epoch rows, TensorBoard, log lines) and checkpoints."""

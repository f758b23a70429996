"""Datasets held in memory as tensors: torchvision's and CIFAR-10, Kaggle CSVs, image
folders; normalised once, split and cut into batches by index."""

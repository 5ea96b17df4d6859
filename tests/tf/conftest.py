"""Test set-up for ganops.tf: quiet TF's C++ logging before TensorFlow is first imported."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

"""Data side: tasks, vocabularies, blank infilling and batching (TensorFlow on the host CPU, see `host_tf`)."""

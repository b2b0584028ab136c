"""The cluster: brokers coordinated through etcd (control.py), which records never pass through."""

"""Cross-validated fine-tuning of timm backbones."""

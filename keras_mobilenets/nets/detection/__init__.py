"""Detection on MobileNet backbones: SSDLite / SSD tables, blocks, anchors, box coding and post-processing."""

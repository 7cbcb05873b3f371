// Package ami holds Dovetail's node image recipe: a Packer template
// (dovetail-al2023.pkr.hcl) that bakes the dovetail-agent rpm into the
// EKS-optimized Amazon Linux 2023 AMI, the equivalent EC2 Image Builder
// component (imagebuilder/), and an EC2NodeClass that selects the baked image
// by its tags. It has no Go API; its tests parse and evaluate the HCL and
// YAML here, since neither Packer nor AWSTOE runs on a development machine.
package ami

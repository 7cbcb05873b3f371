# Packer recipe for a Dovetail node AMI: the EKS-optimized Amazon Linux 2023
# AMI plus the dovetail-agent rpm, with the agent's unit enabled (it starts on
# first boot, once user data has written its settings).
#
#   hack/package.sh                    # dist/dovetail-agent-<version>-1.x86_64.rpm
#   packer init packaging/ami
#   packer build \
#     -var rpm_path=dist/dovetail-agent-<version>-1.x86_64.rpm \
#     -var dovetail_version=<version> \
#     -var kubernetes_version=1.37 \
#     packaging/ami
#
# For Graviton: -var arch=arm64 and the aarch64 rpm (ARCHES=arm64 hack/package.sh).
# The image is tagged dovetail.dev/image=<image_tag> (default "custom") so an
# EC2NodeClass selects it with amiSelectorTerms; see README.md.

packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "Region the AMI is built (and first registered) in."
}

variable "kubernetes_version" {
  type        = string
  default     = "1.37"
  description = "Kubernetes minor version of the EKS-optimized base AMI, e.g. 1.37."
  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "The kubernetes_version must be a minor version such as 1.37."
  }
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "AMI architecture: x86_64 or arm64 (Graviton)."
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch must be x86_64 or arm64."
  }
}

variable "rpm_path" {
  type        = string
  description = "Path of the dovetail-agent rpm for this arch, built by hack/package.sh."
  validation {
    condition     = can(regex("dovetail-agent-.+\\.(x86_64|aarch64)\\.rpm$", var.rpm_path))
    error_message = "The rpm_path must name a dovetail-agent rpm (dovetail-agent-VERSION-1.ARCH.rpm)."
  }
}

variable "dovetail_version" {
  type        = string
  description = "Version of the dovetail-agent rpm; recorded in the AMI's tags and name."
}

variable "image_tag" {
  type        = string
  default     = "custom"
  description = "Value of the dovetail.dev/image tag that EC2NodeClass amiSelectorTerms match."
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "Build instance type; empty picks m7i.large (x86_64) or m7g.large (arm64)."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance; empty lets Packer use the default VPC."
}

variable "ami_users" {
  type        = list(string)
  default     = []
  description = "Account IDs the AMI is shared with."
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Further regions the AMI is copied to."
}

variable "kms_key_id" {
  type        = string
  default     = ""
  description = "KMS key for the encrypted root snapshot; empty uses the account's EBS default key."
}

variable "extra_tags" {
  type        = map(string)
  default     = {}
  description = "More tags for the AMI and its snapshot (e.g. karpenter.sh/discovery)."
}

locals {
  # A sortable build stamp, e.g. 20261127093000.
  stamp = regex_replace(timestamp(), "[- TZ:]", "")

  # The EKS-optimized AL2023 AMIs are named
  # amazon-eks-node-al2023-<arch>-standard-<k8s minor>-v<date>.
  source_ami_name = "amazon-eks-node-al2023-${var.arch}-standard-${var.kubernetes_version}-v*"

  ami_name = "dovetail-al2023-${var.arch}-k8s-${var.kubernetes_version}-${local.stamp}"

  instance_type = var.instance_type != "" ? var.instance_type : (var.arch == "arm64" ? "m7g.large" : "m7i.large")

  # The tags EC2NodeClass amiSelectorTerms select on. dovetail.dev/image is
  # the one the examples use; the others pin a version or an architecture.
  tags = merge(var.extra_tags, {
    "dovetail.dev/image"              = var.image_tag
    "dovetail.dev/version"            = var.dovetail_version
    "dovetail.dev/kubernetes-version" = var.kubernetes_version
    "dovetail.dev/arch"               = var.arch
    "dovetail.dev/base-ami"           = "{{ .SourceAMI }}"
    "dovetail.dev/base-ami-name"      = "{{ .SourceAMIName }}"
  })
}

source "amazon-ebs" "al2023" {
  region          = var.region
  instance_type   = local.instance_type
  subnet_id       = var.subnet_id
  ssh_username    = "ec2-user"
  ami_name        = local.ami_name
  ami_description = "Dovetail node: EKS-optimized AL2023 (Kubernetes ${var.kubernetes_version}, ${var.arch}) with dovetail-agent ${var.dovetail_version}"
  ami_users       = var.ami_users
  ami_regions     = var.ami_regions
  encrypt_boot    = true
  kms_key_id      = var.kms_key_id
  imds_support    = "v2.0"

  source_ami_filter {
    filters = {
      name                = local.source_ami_name
      architecture        = var.arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    # The EKS AMIs are published by Amazon; the alias works in every partition.
    owners      = ["amazon"]
    most_recent = true
  }

  # The build instance gets the same IMDS rules the nodes will have.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 20
    volume_type           = "gp3"
    delete_on_termination = true
  }

  tags          = local.tags
  snapshot_tags = local.tags
  run_tags = {
    "dovetail.dev/packer-build" = "true"
  }
}

build {
  name    = "dovetail-node"
  sources = ["source.amazon-ebs.al2023"]

  provisioner "file" {
    source      = var.rpm_path
    destination = "/tmp/dovetail-agent.rpm"
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/install-agent.sh"
    environment_vars = ["RPM=/tmp/dovetail-agent.rpm", "DOVETAIL_VERSION=${var.dovetail_version}"]
    execute_command  = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      dovetail_version   = var.dovetail_version
      kubernetes_version = var.kubernetes_version
      arch               = var.arch
    }
  }
}

variable "project_id" {
  type        = string
  description = "GCP project of the instance."
}

variable "region" {
  type        = string
  description = "Region of the primary; REGIONAL availability spreads it over two zones."
}

variable "name" {
  type        = string
  description = "Instance name."
}

variable "tier" {
  type        = string
  default     = "db-custom-2-7680"
  description = "Machine tier of the primary and the replica."
}

variable "disk_size_gb" {
  type        = number
  default     = 50
  description = "Initial disk size; it grows automatically."
}

variable "network_id" {
  type        = string
  description = "VPC with private services access: the instance has a private IP only."
}

variable "database_name" {
  type        = string
  default     = "sluice"
  description = "The application database."
}

variable "user_name" {
  type        = string
  default     = "sluice"
  description = "The application's database user."
}

variable "user_password" {
  type        = string
  sensitive   = true
  description = "The user's password (from the secrets module; never in a committed .tfvars)."
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key that encrypts the disks and backups."
}

variable "replica_region" {
  type        = string
  description = "Region of the read replica."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "User labels on the instances."
}
